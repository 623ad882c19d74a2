//! What every Tributary service needs and nothing more: typed settings for the shared
//! infrastructure (Kafka, the lake, ClickHouse), layered config loading, and log and trace set-up.
//!
//! Each service owns its own config struct and embeds the sections it needs from here, so the
//! defaults for "where is Kafka" live in exactly one place.
#![deny(missing_docs)]

pub mod background;
pub mod compose;
pub mod config;
pub mod corpus;
pub mod failpoint;
pub mod health;
pub mod logging;
pub mod names;
pub mod profile;
pub mod sale_event;
pub mod shutdown;
pub mod telemetry;

pub use config::{
    ClickHouseCompression, ClickHouseSettings, ConfigError, KafkaSettings, LakeSettings,
    S3Settings, load,
};
