//! The inventory: which host (and service, container) a monitor is about, and how to reach that host.
//!
//! Input: an incident's monitor. Output: a [`Target`], or `None` ("no host mapping": the incident is
//! escalated with that reason). Resolution order: explicit `[[inventory.monitors]]` entries (all the
//! criteria an entry sets must match), then the monitor's `host` tag or the API's `host` field, then the
//! host part of the monitor URL / hostname against each host's `address` or `name`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::conf::{ConfigError, empty_none};
use crate::domain::{MonitorInfo, MonitorKey};

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub hosts: Vec<HostConfig>,
    pub monitors: Vec<MonitorMapping>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    #[default]
    Ssh,
    /// medic runs on the host it heals: commands run as local processes, no shell.
    Local,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHostsPolicy {
    /// The host key must already be in the known_hosts file.
    #[default]
    Strict,
    /// Trust and record the key on first connection; refuse a changed key afterwards.
    AcceptNew,
}

fn default_port() -> u16 {
    22
}
fn default_user() -> String {
    "medic".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub name: String,
    #[serde(default)]
    pub transport: TransportKind,
    /// Hostname or IP for SSH.
    #[serde(default)]
    pub address: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default, with = "empty_none")]
    pub identity_file: Option<PathBuf>,
    #[serde(default)]
    pub known_hosts: KnownHostsPolicy,
    /// known_hosts file to use instead of ~/.ssh/known_hosts.
    #[serde(default, with = "empty_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// Services on this host (used when a monitor does not say which).
    #[serde(default)]
    pub services: Vec<String>,
    /// Diagnostic templates to run for incidents on this host; empty: every one whose placeholders fit.
    #[serde(default)]
    pub log_sources: Vec<String>,
    /// Wrap commands in `timeout N` on the host so a local timeout also stops the remote process.
    #[serde(default = "yes")]
    pub remote_timeout: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MonitorMapping {
    #[serde(default)]
    pub monitor_id: Option<String>,
    #[serde(default)]
    pub monitor_name: Option<String>,
    /// `name=value`, or `name` for any value.
    #[serde(default)]
    pub tag: Option<String>,
    /// Host part of the monitor's URL or its hostname.
    #[serde(default)]
    pub url_host: Option<String>,
    pub host: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
}

impl InventoryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let key = format!("inventory.hosts[{i}]");
            if h.name.trim().is_empty() {
                return Err(ConfigError::invalid(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(h.name.as_str()) {
                return Err(ConfigError::invalid(format!("{key}.name"), format!("duplicate host name {:?}", h.name)));
            }
            if h.transport == TransportKind::Ssh {
                if h.address.trim().is_empty() {
                    return Err(ConfigError::invalid(format!("{key}.address"), "an ssh host needs an address"));
                }
                if h.address.starts_with('-') || h.user.starts_with('-') || h.user.contains(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        format!("{key}.address"),
                        "address and user must not look like options",
                    ));
                }
                if let Some(path) = &h.identity_file
                    && !path.exists()
                {
                    return Err(ConfigError::invalid(
                        format!("{key}.identity_file"),
                        format!("{} does not exist", path.display()),
                    ));
                }
            }
        }
        for (i, m) in self.monitors.iter().enumerate() {
            let key = format!("inventory.monitors[{i}]");
            if m.monitor_id.is_none() && m.monitor_name.is_none() && m.tag.is_none() && m.url_host.is_none() {
                return Err(ConfigError::invalid(key, "set at least one of monitor_id, monitor_name, tag, url_host"));
            }
            if !names.contains(m.host.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.host"),
                    format!("no host named {:?} in inventory.hosts", m.host),
                ));
            }
        }
        Ok(())
    }
}

/// Where an incident's commands run, and for which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: HostConfig,
    pub service: String,
    pub container: Option<String>,
}

impl PartialEq for HostConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for HostConfig {}

#[derive(Debug, Clone)]
pub struct Inventory {
    config: InventoryConfig,
}

/// The host part of a URL or a bare hostname.
pub fn url_host(monitor: &MonitorInfo) -> Option<String> {
    if let Some(url) = &monitor.url
        && let Ok(parsed) = url::Url::parse(url)
        && let Some(host) = parsed.host_str()
    {
        return Some(host.trim_start_matches('[').trim_end_matches(']').to_string());
    }
    monitor.hostname.clone()
}

impl Inventory {
    pub fn new(config: InventoryConfig) -> Self {
        Self { config }
    }

    pub fn is_empty(&self) -> bool {
        self.config.hosts.is_empty()
    }

    pub fn hosts(&self) -> &[HostConfig] {
        &self.config.hosts
    }

    pub fn host(&self, name: &str) -> Option<&HostConfig> {
        self.config.hosts.iter().find(|h| h.name == name)
    }

    pub fn resolve(&self, key: &MonitorKey, monitor: &MonitorInfo) -> Option<Target> {
        let host_of_url = url_host(monitor);
        let tag_matches = |spec: &str| match spec.split_once('=') {
            Some((name, value)) => monitor.tag(name) == Some(value),
            None => monitor.tag(spec).is_some(),
        };
        let mapping = self.config.monitors.iter().find(|m| {
            m.monitor_id.as_ref().is_none_or(|id| *id == key.monitor_id)
                && m.monitor_name.as_ref().is_none_or(|n| *n == monitor.name)
                && m.tag.as_deref().is_none_or(tag_matches)
                && m.url_host.as_ref().is_none_or(|h| host_of_url.as_deref() == Some(h.as_str()))
        });
        let (host, mapped_service, mapped_container) = match mapping {
            Some(m) => (self.host(&m.host)?, m.service.clone(), m.container.clone()),
            None => {
                let by_name = monitor.tag("host").or(monitor.host.as_deref()).and_then(|n| {
                    self.config.hosts.iter().find(|h| h.name == n || (!h.address.is_empty() && h.address == n))
                });
                let by_url = || {
                    host_of_url.as_deref().and_then(|u| {
                        self.config.hosts.iter().find(|h| h.name == u || (!h.address.is_empty() && h.address == u))
                    })
                };
                (by_name.or_else(by_url)?, None, None)
            }
        };
        let service = mapped_service
            .or_else(|| monitor.service.clone())
            .or_else(|| monitor.tag("service").map(str::to_string))
            .or_else(|| (host.services.len() == 1).then(|| host.services[0].clone()))
            .unwrap_or_else(|| monitor.name.clone());
        let container = mapped_container
            .or_else(|| monitor.docker_container.clone())
            .or_else(|| monitor.tag("container").map(str::to_string));
        Some(Target { host: host.clone(), service, container })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Source, Tag};

    fn host(name: &str, address: &str, services: &[&str]) -> HostConfig {
        HostConfig {
            name: name.into(),
            transport: TransportKind::Ssh,
            address: address.into(),
            port: 22,
            user: "medic".into(),
            identity_file: None,
            known_hosts: KnownHostsPolicy::Strict,
            known_hosts_file: None,
            services: services.iter().map(|s| s.to_string()).collect(),
            log_sources: vec![],
            remote_timeout: true,
        }
    }

    fn inventory() -> Inventory {
        Inventory::new(InventoryConfig {
            hosts: vec![host("web1", "10.0.0.5", &["nginx"]), host("db1", "10.0.0.6", &["postgresql", "pgbouncer"])],
            monitors: vec![
                MonitorMapping {
                    monitor_id: Some("7".into()),
                    host: "db1".into(),
                    service: Some("pgbouncer".into()),
                    ..Default::default()
                },
                MonitorMapping {
                    tag: Some("env=staging".into()),
                    host: "web1".into(),
                    service: Some("apache2".into()),
                    ..Default::default()
                },
            ],
        })
    }

    fn monitor(name: &str, url: Option<&str>, tags: &[(&str, &str)]) -> MonitorInfo {
        MonitorInfo {
            name: name.into(),
            url: url.map(str::to_string),
            tags: tags.iter().map(|(n, v)| Tag { name: n.to_string(), value: v.to_string() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn resolution_table() {
        let inv = inventory();
        let key = |id: &str| MonitorKey::new(Source::UptimeKuma, id);
        // (monitor key, monitor, expected (host, service), why)
        type Case = (MonitorKey, MonitorInfo, Option<(&'static str, &'static str)>, &'static str);
        let cases: Vec<Case> = vec![
            (key("7"), monitor("Pool", None, &[]), Some(("db1", "pgbouncer")), "explicit monitor id"),
            (
                key("8"),
                monitor("Site", Some("http://x/"), &[("env", "staging")]),
                Some(("web1", "apache2")),
                "explicit tag",
            ),
            (
                key("9"),
                monitor("Shop", Some("https://10.0.0.5/health"), &[]),
                Some(("web1", "nginx")),
                "URL host = address; the host's only service",
            ),
            (
                key("9"),
                monitor("Shop", Some("http://web1:8080/"), &[("service", "php-fpm")]),
                Some(("web1", "php-fpm")),
                "URL host = name; service tag",
            ),
            (
                key("9"),
                monitor("DB", None, &[("host", "db1")]),
                Some(("db1", "DB")),
                "host tag; several services: the monitor name",
            ),
            (key("9"), monitor("Elsewhere", Some("https://example.org/"), &[]), None, "no mapping"),
        ];
        for (key, monitor, want, why) in cases {
            let got = inv.resolve(&key, &monitor).map(|t| (t.host.name.clone(), t.service.clone()));
            assert_eq!(got, want.map(|(h, s)| (h.to_string(), s.to_string())), "{why}");
        }
    }

    #[test]
    fn invalid_inventory_names_the_key() {
        let cases = [
            (InventoryConfig { hosts: vec![host("a", "", &[])], monitors: vec![] }, "inventory.hosts[0].address"),
            (
                InventoryConfig { hosts: vec![host("a", "x", &[]), host("a", "y", &[])], monitors: vec![] },
                "inventory.hosts[1].name",
            ),
            (
                InventoryConfig {
                    hosts: vec![host("a", "x", &[])],
                    monitors: vec![MonitorMapping {
                        monitor_id: Some("1".into()),
                        host: "b".into(),
                        ..Default::default()
                    }],
                },
                "inventory.monitors[0].host",
            ),
            (
                InventoryConfig {
                    hosts: vec![host("a", "x", &[])],
                    monitors: vec![MonitorMapping { host: "a".into(), ..Default::default() }],
                },
                "inventory.monitors[0]",
            ),
            (
                InventoryConfig { hosts: vec![host("a", "-oProxyCommand=x", &[])], monitors: vec![] },
                "inventory.hosts[0].address",
            ),
        ];
        for (config, key) in cases {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
