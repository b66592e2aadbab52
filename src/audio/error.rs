//! Why the audio engine could not load a pack's library, decode a file or
//! write a mix.

use std::path::PathBuf;

use crate::pack::paths::OpenError;
use crate::pack::PackError;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open: {0}")]
    Open(#[from] OpenError),
    #[error("cannot decode: {0}")]
    Decode(#[from] rodio::decoder::DecoderError),
    #[error("longer than {minutes} minutes; sqm plays shorter tracks")]
    TooLong { minutes: u32 },
    #[error("the file holds no audio")]
    Silent,
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}
