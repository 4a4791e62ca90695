//! Configuration building blocks every stage uses: [`ConfigError`] (a bad key, named), [`Secret`]
//! (never printed) and [`empty_none`] (`""` means "not set"). A leaf module: it imports nothing from
//! medic, so stages own their config types and validate them without depending on the `Settings` tree
//! (which depends on them).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serializer};

/// A secret value from config: never printed. An empty string in TOML means "not set".
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// `Option<T>` as a TOML string where `""` means `None`, so every key can be present in `medic.toml`.
pub mod empty_none {
    use super::*;

    /// How an optional config value prints (secrets print masked).
    pub trait ConfigText {
        fn config_text(&self) -> String;
    }
    impl ConfigText for Secret {
        fn config_text(&self) -> String {
            "********".into()
        }
    }
    impl ConfigText for PathBuf {
        fn config_text(&self) -> String {
            self.display().to_string()
        }
    }
    impl ConfigText for String {
        fn config_text(&self) -> String {
            self.clone()
        }
    }
    impl ConfigText for url::Url {
        fn config_text(&self) -> String {
            self.to_string()
        }
    }

    pub fn serialize<S: Serializer, T: ConfigText>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.config_text()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = String::deserialize(d)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        trimmed.parse::<T>().map(Some).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Load(String),
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("config file {path} does not exist")]
    Missing { path: PathBuf },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::Invalid { key: key.into(), message: message.to_string() }
    }
}
