//! Renders in an S3-compatible object store (remote-and-telemetry.md §1):
//! the settings, the object key, and the uploader the daemon and the
//! ZeroMQ worker share.

mod client;
mod config;
mod key;

pub use client::{StoreStatus, UploadError, Uploaded, Uploader};
pub use config::{check_url, ConfigError, Credentials, OnFailure, StoreConfig};
pub(crate) use key::{kind, object_key, segment, sha256_hex, Place};
