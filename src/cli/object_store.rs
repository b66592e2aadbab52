//! The object-store flags of `sqm serve` (remote-and-telemetry.md §1.1).
//! Credentials are read from the environment only: flags show in `ps`.

use std::time::Duration;

use crate::store::{check_url, Credentials, OnFailure, StoreConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Upload every render to this S3-compatible store (R2, AWS, MinIO) and answer its key as
    /// `r2_key`. Credentials: R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY, else AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN).
    #[arg(long, env = "R2_S3_ENDPOINT", hide_env_values = true, value_name = "URL")]
    pub object_store_endpoint: Option<String>,
    /// Upload nothing, even when R2_S3_ENDPOINT is set.
    #[arg(long)]
    pub no_object_store: bool,
    /// Bucket the renders go to.
    #[arg(long, env = "SQM_OBJECT_STORE_BUCKET", default_value = "sidequest", value_name = "NAME")]
    pub object_store_bucket: String,
    /// Region to sign for (default: $AWS_REGION, else `auto`, as R2 expects).
    #[arg(long, env = "SQM_OBJECT_STORE_REGION", value_name = "REGION")]
    pub object_store_region: Option<String>,
    /// Address the bucket as a host name (<bucket>.<endpoint host>) instead of a path.
    #[arg(long)]
    pub object_store_virtual_hosted: bool,
    /// Where anyone can read the bucket's objects (ZeroMQ results then carry <URL>/<key>).
    #[arg(long, env = "SQM_OBJECT_STORE_PUBLIC_URL", value_name = "URL")]
    pub object_store_public_url: Option<String>,
    /// Longest a whole upload may take, retries included.
    #[arg(long, env = "SQM_UPLOAD_TIMEOUT", default_value_t = 60.0, value_name = "SECS")]
    pub upload_timeout: f64,
    /// A failed upload fails the render (`error`; the file stays cached, so a resend only
    /// uploads again) or answers the local file with `upload_error` (`keep-local`).
    #[arg(long, env = "SQM_UPLOAD_FAILURE", default_value = "error", value_parser = ["error", "keep-local"])]
    pub upload_failure: String,
}

impl StoreArgs {
    /// The store's settings, or None when uploads are off. Nothing is
    /// contacted; messages name settings, never their values.
    pub(crate) fn resolve(&self) -> anyhow::Result<Option<StoreConfig>> {
        let endpoint = match (&self.object_store_endpoint, self.no_object_store) {
            (Some(e), false) if !e.trim().is_empty() => e,
            _ => return Ok(None),
        };
        let endpoint = check_url(endpoint, "--object-store-endpoint (R2_S3_ENDPOINT)")?;
        let public_url = match &self.object_store_public_url {
            Some(u) if !u.trim().is_empty() => {
                Some(check_url(u, "--object-store-public-url (SQM_OBJECT_STORE_PUBLIC_URL)")?)
            }
            _ => None,
        };
        let bucket = self.object_store_bucket.trim();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            anyhow::bail!("--object-store-bucket must be 3 to 63 lower-case letters, digits, '-' or '.'");
        }
        let t = self.upload_timeout;
        if !(t.is_finite() && t >= 0.1) {
            anyhow::bail!("--upload-timeout must be a number of seconds ≥ 0.1");
        }
        let region = self
            .object_store_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "auto".into());
        let credentials = Credentials::from_env(|name| std::env::var(name).ok())?;
        Ok(Some(StoreConfig {
            endpoint,
            bucket: bucket.to_owned(),
            region,
            virtual_hosted: self.object_store_virtual_hosted,
            public_url,
            timeout: Duration::from_secs_f64(t),
            on_failure: if self.upload_failure == "keep-local" { OnFailure::KeepLocal } else { OnFailure::Error },
            credentials,
        }))
    }
}
