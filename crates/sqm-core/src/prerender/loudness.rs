//! EBU R128 loudness of an audio file: integrated loudness, true peak, and
//! the gain that brings it to a target without pushing the true peak over
//! −1 dBTP.

use std::path::Path;

use ebur128::{EbuR128, Mode};
use serde::{Deserialize, Serialize};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Why a file could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum LoudnessError {
    #[error("cannot open: {0}")]
    Open(#[from] crate::pack::paths::OpenError),
    #[error("not a readable audio file: {0}")]
    Format(SymError),
    #[error("the container holds no audio track")]
    NoTrack,
    #[error("cannot decode: {0}")]
    Decode(SymError),
    #[error("cannot read packet: {0}")]
    Packet(SymError),
    #[error("corrupt audio after {frames} frames: {message}")]
    Corrupt { frames: u64, message: String },
    #[error("cannot meter {channels} channels at {rate} Hz: {source}")]
    Meter { channels: u32, rate: u32, source: ebur128::Error },
    #[error("{0}")]
    Measure(#[from] ebur128::Error),
    #[error("the file holds no audio")]
    Silent,
}

/// The true-peak ceiling a gain may not push past.
pub(crate) const TRUE_PEAK_CEILING_DBTP: f64 = -1.0;

/// What the analysis of one file found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness (LUFS); `None` for digital silence.
    pub integrated_lufs: Option<f64>,
    /// Highest true peak over all channels (dBTP); `None` for silence.
    pub true_peak_dbtp: Option<f64>,
    pub target_lufs: f64,
    /// Gain to apply at playback (dB): towards the target, capped so the
    /// true peak stays at or below −1 dBTP. 0 for silence.
    pub gain_db: f64,
    pub duration_s: f64,
    pub sample_rate: u32,
    pub channels: u32,
}

/// Decodes `path` completely and measures it.
pub fn analyse(path: &Path, target_lufs: f64) -> Result<Loudness, LoudnessError> {
    let (file, _) = crate::pack::paths::open_regular(path)?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(LoudnessError::Format)?;
    let mut format = probed.format;
    let track =
        format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL).ok_or(LoudnessError::NoTrack)?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(LoudnessError::Decode)?;
    let mut meter: Option<EbuR128> = None;
    let mut buf: Option<SampleBuffer<f32>> = None;
    let (mut rate, mut channels, mut frames) = (0u32, 0u32, 0u64);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(LoudnessError::Packet(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(e)) => return Err(LoudnessError::Corrupt { frames, message: e.to_owned() }),
            Err(e) => return Err(LoudnessError::Decode(e)),
        };
        let spec = *decoded.spec();
        if meter.is_none() {
            rate = spec.rate;
            channels = spec.channels.count() as u32;
            meter = Some(
                EbuR128::new(channels, rate, Mode::I | Mode::TRUE_PEAK).map_err(|source| LoudnessError::Meter {
                    channels,
                    rate,
                    source,
                })?,
            );
        }
        let b = buf.get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, spec));
        if b.capacity() < decoded.capacity() * channels as usize {
            *b = SampleBuffer::new(decoded.capacity() as u64, spec);
        }
        b.copy_interleaved_ref(decoded);
        frames += (b.samples().len() / channels.max(1) as usize) as u64;
        meter.as_mut().expect("set above").add_frames_f32(b.samples())?;
    }
    let meter = meter.ok_or(LoudnessError::Silent)?;
    let integrated = meter.loudness_global()?;
    let integrated = integrated.is_finite().then_some(integrated);
    let mut peak = 0f64;
    for c in 0..channels {
        peak = peak.max(meter.true_peak(c)?);
    }
    let true_peak_dbtp = (peak > 0.0).then(|| 20.0 * peak.log10());
    Ok(Loudness {
        integrated_lufs: integrated,
        true_peak_dbtp,
        target_lufs,
        gain_db: gain(integrated, true_peak_dbtp, target_lufs),
        duration_s: frames as f64 / rate.max(1) as f64,
        sample_rate: rate,
        channels,
    })
}

/// The playback gain: target − integrated, lowered so that
/// true peak + gain ≤ −1 dBTP. Silence gets 0.
pub fn gain(integrated: Option<f64>, true_peak: Option<f64>, target: f64) -> f64 {
    let Some(i) = integrated else { return 0.0 };
    let mut g = target - i;
    if let Some(tp) = true_peak {
        g = g.min(TRUE_PEAK_CEILING_DBTP - tp);
    }
    (g * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_is_capped_by_true_peak() {
        assert_eq!(gain(Some(-20.0), Some(-6.0), -16.0), 4.0);
        // Raising by 4 dB would put the peak at +1 dBTP: capped to −1.
        assert_eq!(gain(Some(-20.0), Some(-3.0), -16.0), 2.0);
        // Lowering is never capped.
        assert_eq!(gain(Some(-10.0), Some(0.5), -16.0), -6.0);
        assert_eq!(gain(None, None, -16.0), 0.0);
    }
}
