//! sqm's integration tests, compiled into one binary (one link instead of
//! one per file; run a part with a filter, e.g. `cargo test --release --test
//! suite daemon::`). Each module tests one surface against the real binary
//! or the library's public API.

mod common;

mod adversarial;
mod architecture;
mod audio;
mod cache;
mod composer_v2;
mod conditioning;
mod daemon;
mod daemon_load;
mod docs;
mod embed;
mod first_hour;
mod flux;
mod flux_reference;
mod interpret_cli;
mod object_store;
#[cfg(feature = "otlp")]
mod otlp;
mod prerender;
mod validate_pack;
mod watchdog;
mod watcher;
mod zimage;
mod zmq;
