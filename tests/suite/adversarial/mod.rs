//! Attacks on sqm, one module per attack surface, each test one attack: a
//! pack, manifest, request or client written by someone hostile. Each test
//! states the harm it guards against; all run against the real binary or
//! the library's public entry points.

use crate::common;

mod support;

mod audio_truncated;
mod billion_laughs;
mod pack_containment;
mod prerender_interrupt;
mod prerender_manifest;
mod properties;
mod slow_clients;
mod wire_limits;
mod zmq_inputs;
