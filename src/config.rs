//! One `Settings` tree, layered: built-in defaults → a TOML file → `MEDIC_<SECTION>__<KEY>` env vars.
//!
//! Every struct denies unknown fields, so a typo is an error at start-up naming the key, never a silent
//! default. Secrets are [`Secret`]s: they print as `********` in `Debug`, in `check-config` and in logs.
//! `Settings::load` is the only entry point and runs the same validation `medic check-config` reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::conf::{ConfigError, Secret, empty_none};
pub use crate::pipeline::PipelineConfig;
pub use crate::store::{StoreConfig, Synchronous};

/// The env prefix for overrides: `MEDIC_SERVER__BIND=0.0.0.0:8080` sets `server.bind`.
pub const ENV_PREFIX: &str = "MEDIC_";

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub pipeline: PipelineConfig,
    pub log: LogConfig,
    pub gate: crate::gate::GateConfig,
    pub inventory: crate::inventory::InventoryConfig,
    pub transport: crate::transport::TransportConfig,
    pub collect: crate::collect::CollectConfig,
    pub redact: crate::collect::RedactConfig,
    pub execute: crate::execute::ExecuteConfig,
    pub verify: crate::execute::VerifyConfig,
    pub memory: crate::memory::MemoryConfig,
    pub diagnose: crate::diagnose::DiagnoseConfig,
    pub approval: crate::approval::ApprovalConfig,
    pub notify: crate::notify::NotifyConfig,
    pub console: crate::web::console::ConsoleConfig,
    pub probe: crate::probe::ProbeSettings,
    pub health: crate::health::HealthConfig,
    pub probes: Vec<crate::probe::ProbeConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds. Port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests and pipelines; past it, connections are
    /// closed whatever clients do.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A client must send a request's headers within this time; also how long an idle keep-alive
    /// connection stays open.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A whole request, body included, must arrive and be answered within this time (else 408).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open connections at most; past it new ones get 503 and are closed. 0: from the process's file
    /// limit (that minus 128, at most 4096).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(20),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Token for webhooks and the JSON API (`Authorization: Bearer <token>` or `?token=`).
    /// Empty: medic generates one into `<data_dir>/secrets/api_token` on first start.
    #[serde(with = "empty_none")]
    pub token: Option<Secret>,
    /// Read the token from this file instead (first line).
    #[serde(with = "empty_none")]
    pub token_file: Option<PathBuf>,
    /// Accept webhooks and API calls with no token at all. Logged as a warning at start-up.
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "pretty" for people, "json" for log collectors. `RUST_LOG` overrides `level`.
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the config came from, for `check-config` and the start-up log.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    EmbeddedDefaults,
}

impl Settings {
    /// Loads defaults, then `path` (if any), then `MEDIC_*__*` env vars; validates everything.
    ///
    /// `path: None` looks for `config/medic.toml` in the working directory and falls back to the embedded
    /// defaults when it is absent, so `medic serve` runs with no file at all.
    pub fn load(path: Option<&Path>) -> Result<(Self, ConfigSource), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// Same as [`Settings::load`] with an explicit environment (tests never call `set_var`).
    pub fn load_with_env(path: Option<&Path>, env: &[(String, String)]) -> Result<(Self, ConfigSource), ConfigError> {
        let (file, source) = match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing { path: p.to_path_buf() }),
            Some(p) => (Some(p.to_path_buf()), ConfigSource::File(p.to_path_buf())),
            None => {
                let default = PathBuf::from("config/medic.toml");
                if default.exists() {
                    (Some(default.clone()), ConfigSource::File(default))
                } else {
                    (None, ConfigSource::EmbeddedDefaults)
                }
            }
        };
        let mut figment = defaults();
        if let Some(file) = &file {
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(env_provider(env));
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        settings.validate()?;
        Ok((settings, source))
    }

    /// Parses a TOML string on top of the defaults (used by tests and `check-config`).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let settings: Settings =
            defaults().merge(Toml::string(text)).extract().map_err(|e| ConfigError::Load(describe_figment_error(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks everything serde could not: cross-field rules, regexes, templates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.header_timeout < Duration::from_millis(100) {
            return Err(ConfigError::invalid("server.header_timeout", "must be at least 100ms"));
        }
        if self.server.request_timeout < Duration::from_millis(100) {
            return Err(ConfigError::invalid("server.request_timeout", "must be at least 100ms"));
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::invalid("server.max_body_bytes", "must be above 0"));
        }
        if self.pipeline.max_concurrent == 0 {
            return Err(ConfigError::invalid("pipeline.max_concurrent", "must be above 0"));
        }
        if self.store.max_batch == 0 {
            return Err(ConfigError::invalid("store.max_batch", "must be above 0"));
        }
        if let Err((key, why)) = self.store.validate() {
            return Err(ConfigError::invalid(key, why));
        }
        if self.auth.token.is_some() && self.auth.token_file.is_some() {
            return Err(ConfigError::invalid("auth.token_file", "set either auth.token or auth.token_file, not both"));
        }
        self.gate.validate()?;
        self.inventory.validate()?;
        self.transport.validate()?;
        self.collect.validate()?;
        self.redact.validate()?;
        self.execute.validate()?;
        self.verify.validate()?;
        self.memory.validate()?;
        self.diagnose.validate()?;
        self.approval.validate()?;
        self.console.validate()?;
        crate::probe::specs(&self.probes)?;
        self.health.validate()?;
        if self.probe.max_concurrent == 0 {
            return Err(ConfigError::invalid("probe.max_concurrent", "must be at least 1"));
        }
        if self.approval.require_login && !self.console.has_operators() {
            return Err(ConfigError::invalid(
                "approval.require_login",
                "needs console operators ([[console.users]] or console.proxy_header): nobody could decide",
            ));
        }
        if self.approval.require_login && !self.console.enabled {
            return Err(ConfigError::invalid("approval.require_login", "needs console.enabled = true"));
        }
        self.notify.validate()?;
        if let Some(token) = &self.auth.token
            && token.expose().len() < 12
        {
            return Err(ConfigError::invalid("auth.token", "must be at least 12 characters"));
        }
        Ok(())
    }

    /// Things that are legal but probably not what the operator wants.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.auth.allow_unauthenticated {
            out.push("auth.allow_unauthenticated = true: anyone who can reach medic can post alerts".into());
        }
        out
    }

    /// The effective configuration as TOML with every secret masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not render config: {e}\n"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.store.data_dir.join("medic.db")
    }
}

/// Secrets serialize masked, so printing the effective config never shows them.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret::new(String::deserialize(d)?))
    }
}

/// The built-in defaults as the bottom layer, so a file may set part of a table (say only
/// `[diagnose.l1] url`) and keep the defaults for the rest of it.
fn defaults() -> Figment {
    Figment::from(figment::providers::Serialized::defaults(Settings::default()))
}

fn env_provider(env: &[(String, String)]) -> figment::providers::Serialized<figment::value::Dict> {
    // Only `MEDIC_<SECTION>__<KEY>` variables are config; other MEDIC_* variables (MEDIC_CONFIG,
    // MEDIC_TEST_*) are not, and must not trip the unknown-key check.
    let mut dict = figment::value::Dict::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if !rest.contains("__") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let parsed: figment::value::Value =
            value.parse::<figment::value::Value>().unwrap_or_else(|_| figment::value::Value::from(value.clone()));
        insert_path(&mut dict, &path, parsed);
    }
    figment::providers::Serialized::defaults(dict)
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [head, rest @ ..] => {
            let entry = dict.entry(head.clone()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                .unwrap_or_else(|| e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default());
            if key.is_empty() { format!("{}{source}", e.kind) } else { format!("`{key}`: {}{source}", e.kind) }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (k, v) in table {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                // Tables whose keys are user data (maps) are documented by example, not key by key.
                if v.is_table() && !is_user_map(&key) {
                    toml_keys(v, &key, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    fn is_user_map(key: &str) -> bool {
        matches!(key, "diagnose.prices")
    }

    #[test]
    fn a_partial_table_keeps_the_defaults_for_the_rest() {
        let s = Settings::from_toml_str("[diagnose.l1]\nurl = \"http://127.0.0.1:11434/\"\nmodel = \"qwen2.5:3b\"\n")
            .unwrap();
        assert_eq!(s.diagnose.l1.url.unwrap().as_str(), "http://127.0.0.1:11434/");
        assert_eq!(s.diagnose.l1.model, "qwen2.5:3b");
        let d = Settings::default();
        assert_eq!(s.diagnose.l1.timeout, d.diagnose.l1.timeout);
        assert_eq!(s.diagnose.l2.model, d.diagnose.l2.model);
        let e = Settings::from_toml_str("[diagnose.l1]\nurll = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("urll"), "{e}");
    }

    #[test]
    fn shipped_medic_toml_has_every_key_and_the_default_values() {
        let shipped_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/medic.toml")).unwrap();
        let shipped: toml::Value = toml::from_str(&shipped_text).unwrap();
        let defaults: toml::Value = toml::Value::try_from(Settings::default()).unwrap();
        let mut want = Vec::new();
        toml_keys(&defaults, "", &mut want);
        let mut have = Vec::new();
        toml_keys(&shipped, "", &mut have);
        want.sort();
        have.sort();
        let missing: Vec<_> = want.iter().filter(|k| !have.contains(k)).collect();
        let extra: Vec<_> = have.iter().filter(|k| !want.contains(k)).collect();
        assert!(missing.is_empty(), "config/medic.toml lacks keys: {missing:?}");
        assert!(extra.is_empty(), "config/medic.toml has keys Settings does not know: {extra:?}");
        assert_eq!(shipped, defaults, "config/medic.toml values must equal the built-in defaults");
        Settings::from_toml_str(&shipped_text).unwrap();
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let err = Settings::from_toml_str("[server]\nbindd = \"127.0.0.1:1\"\n").unwrap_err().to_string();
        assert!(err.contains("bindd"), "{err}");
        let err = Settings::from_toml_str("[nosuchsection]\nx = 1\n").unwrap_err().to_string();
        assert!(err.contains("nosuchsection"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_ignores_non_config_vars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "[server]\nbind = \"127.0.0.1:9000\"\n").unwrap();
        let env = vec![
            ("MEDIC_SERVER__BIND".to_string(), "127.0.0.1:9100".to_string()),
            ("MEDIC_PIPELINE__MAX_CONCURRENT".to_string(), "3".to_string()),
            ("MEDIC_TEST_QDRANT_URL".to_string(), "http://x".to_string()),
            ("MEDIC_CONFIG".to_string(), "whatever".to_string()),
        ];
        let (settings, _) = Settings::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(settings.server.bind.port(), 9100);
        assert_eq!(settings.pipeline.max_concurrent, 3);
    }

    #[test]
    fn unknown_env_key_is_refused_naming_it() {
        let env = vec![("MEDIC_SERVER__NOPE".to_string(), "1".to_string())];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "").unwrap();
        let err = Settings::load_with_env(Some(&path), &env).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn secrets_are_masked_everywhere() {
        let settings = Settings::from_toml_str("[auth]\ntoken = \"super-secret-token-value\"\n").unwrap();
        assert!(!format!("{settings:?}").contains("super-secret"));
        let printed = settings.to_masked_toml();
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(printed.contains("********"));
        assert_eq!(settings.auth.token.as_ref().unwrap().expose(), "super-secret-token-value");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[server]\nbind = \"not an address\"\n", "server.bind"),
            ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
            ("[auth]\ntoken = \"short\"\n", "auth.token"),
            ("[store]\nsynchronous = \"sometimes\"\n", "store.synchronous"),
            ("[store]\nurl = \"mysql://db/medic\"\n", "store.url"),
            ("[store]\nlease = \"10ms\"\n", "store.lease"),
            ("[pipeline]\nretry_backoff = \"soon\"\n", "pipeline.retry_backoff"),
            ("[approval]\nincident_link_ttl = \"10s\"\n", "approval.incident_link_ttl"),
            ("[approval]\nrequire_login = true\n", "approval.require_login"),
            ("[[console.users]]\nname = \"alice\"\npassword_hash = \"hunter2\"\n", "console.users[0].password_hash"),
            ("[[console.users]]\nname = \"alice\"\n", "console.users[0].password_hash"),
            ("[[console.users]]\nname = \"al ice\"\n", "console.users[0].name"),
            ("[console]\nproxy_header = \"X-Forwarded-User\"\n", "console.trusted_proxies"),
            ("[[probes]]\nname = \"web\"\nurl = \"ftp://x\"\n", "probes[0].url"),
            ("[[probes]]\nname = \"db\"\nkind = \"tcp\"\naddress = \"db\"\n", "probes[0].address"),
            (
                "[[probes]]\nname = \"web\"\nurl = \"http://x\"\naccepted_status = \"2xx\"\n",
                "probes[0].accepted_status",
            ),
            (
                "[[probes]]\nname = \"web\"\nurl = \"http://x\"\n[[probes]]\nname = \"web\"\nurl = \"http://y\"\n",
                "probes[1].name",
            ),
        ];
        for (text, key) in cases {
            let err = Settings::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(key), "expected {key} in: {err}");
        }
    }
}
