//! Audio asset probing: open the container by content (never by extension)
//! and decode the first packet, so corrupt, truncated and mislabelled files
//! are caught at validation time rather than at the game table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The container opened and its first packet decoded.
    Ok { codec: String, sample_rate: Option<u32>, channels: Option<usize> },
    /// A well-formed file in a codec sqm cannot decode (for example Opus).
    Unsupported(String),
    /// Corrupt, truncated, empty, or not audio at all.
    Undecodable(String),
}

/// Probes `path`: decodes the container header and the first packet, then
/// reads (without decoding) the remaining packets to catch truncation.
pub(crate) fn probe_audio(path: &Path) -> Probe {
    let file = match crate::pack::paths::open_regular(path) {
        Ok((f, _)) => f,
        Err(e) => return Probe::Undecodable(format!("cannot open: {e}")),
    };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = match symphonia::default::get_probe().format(
        &Hint::new(),
        mss,
        &FormatOptions::default(),
        &MetadataOptions::default(),
    ) {
        Ok(p) => p,
        Err(SymError::Unsupported(what)) => {
            return Probe::Undecodable(format!("not a recognised audio container ({what})"))
        }
        Err(e) => return Probe::Undecodable(format!("cannot read container: {e}")),
    };
    let mut format = probed.format;
    let Some(track) = format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL) else {
        return Probe::Undecodable("the container holds no audio track".to_owned());
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    let codec_name = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .map(|d| d.short_name.to_owned())
        .unwrap_or_else(|| codec_short_name(params.codec));
    let mut decoder = match symphonia::default::get_codecs().make(&params, &DecoderOptions::default()) {
        Ok(d) => d,
        Err(SymError::Unsupported(_)) => {
            return Probe::Unsupported(format!("codec '{codec_name}' is not supported by sqm"))
        }
        Err(e) => return Probe::Undecodable(format!("cannot set up the {codec_name} decoder: {e}")),
    };
    // Decode the first packet of the audio track.
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Probe::Undecodable("the file ends before its first audio packet".to_owned())
            }
            Err(e) => return Probe::Undecodable(format!("cannot read the first packet: {e}")),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let channels = match decoder.decode(&packet) {
            Ok(buf) => buf.spec().channels.count(),
            Err(e) => return Probe::Undecodable(format!("the first {codec_name} packet does not decode: {e}")),
        };
        // A file cut short keeps a header that promises more: walk the
        // remaining packets (reading, not decoding) and compare.
        if let Some(promised) = params.n_frames {
            let mut held = packet.dur;
            while let Ok(p) = format.next_packet() {
                if p.track_id() == track_id {
                    held += p.dur;
                }
            }
            // Allow one packet of slack for encoder padding.
            let slack = packet.dur.max(4096);
            if held + slack < promised {
                return Probe::Undecodable(format!(
                    "truncated: the header promises {promised} frames, the file holds {held}"
                ));
            }
        }
        return Probe::Ok { codec: codec_name, sample_rate: params.sample_rate, channels: Some(channels) };
    }
}

fn codec_short_name(codec: symphonia::core::codecs::CodecType) -> String {
    use symphonia::core::codecs::*;
    match codec {
        c if c == CODEC_TYPE_OPUS => "opus".into(),
        c if c == CODEC_TYPE_AAC => "aac".into(),
        c if c == CODEC_TYPE_ALAC => "alac".into(),
        other => format!("{other}"),
    }
}

/// A run-wide cache: each distinct file (by canonical path) is probed once,
/// even when several packs validated in parallel reference it.
#[derive(Default)]
pub struct ProbeCache {
    entries: Mutex<HashMap<PathBuf, Arc<OnceLock<Probe>>>>,
}

impl ProbeCache {
    pub fn probe(&self, canonical: &Path) -> Probe {
        let cell = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(canonical.to_path_buf()).or_default().clone()
        };
        cell.get_or_init(|| probe_audio(canonical)).clone()
    }

    /// How many distinct files were probed.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
