//! `sqm serve`: the warm sidecar the game server talks to over a Unix socket
//! (protocol.md).
//!
//! * [`wire`] — every type that crosses the socket;
//! * [`state`] — what the parts of a running daemon share (`Ctx`);
//! * [`connection`] — framing, in-order replies, events, disconnects;
//! * [`dispatch`] — one request to its reply;
//! * [`scheduler`] — the render and embed lanes;
//! * [`publish`] — after a render: the cache and the object-store upload;
//! * [`cache`] — the bounded output folder;
//! * [`watcher`] — events to the game server's GM panel;
//! * [`spans`] — the reference's span names and attributes;
//! * [`audio`] — the audio control methods and the live mixer;
//! * [`server`] — startup checks, accept loop, graceful drain;
//! * [`zmq`] — the ZeroMQ worker mode (experimance's render protocol);
//! * [`client`] — talking to a running daemon (`sqm serve --status`).

pub(crate) mod audio;
pub(crate) mod backend_thread;
pub(crate) mod cache;
pub mod client;
pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod inputs;
pub(crate) mod publish;
pub mod scheduler;
pub mod server;
pub(crate) mod spans;
pub(crate) mod state;
pub(crate) mod watcher;
pub mod wire;
pub(crate) mod zmq;
