//! The weight-free default backend: a fast, deterministic sketch that makes
//! the tier (canvas and composition), the mood (palette) and the subject
//! (caption) visible at a glance. Every image carries a "SKETCH" caption so
//! it is never mistaken for model output.

use super::font::{draw_text, text_width, wrap};
use super::{Backend, Image, RenderError, RenderJob};
use crate::interpret::Tier;

#[derive(Debug)]
pub struct SketchBackend {
    loaded: bool,
    /// A pause before drawing, for tests of long renders (the hidden knob
    /// `SQM_TEST_SKETCH_DELAY_MS`): slept in 50 ms slices, honouring cancel.
    delay: std::time::Duration,
    /// `SQM_TEST_SKETCH_IGNORE_CANCEL=1`: the pause does not look at cancel
    /// (a backend stuck in one long step, for the render watchdog's tests).
    ignore_cancel: bool,
    /// `SQM_TEST_SKETCH_DELAY_ONLY=WORD`: only prompts containing WORD wait.
    delay_only: Option<String>,
}

impl Default for SketchBackend {
    fn default() -> Self {
        let ms = std::env::var("SQM_TEST_SKETCH_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ignore_cancel = std::env::var("SQM_TEST_SKETCH_IGNORE_CANCEL").is_ok_and(|v| v == "1");
        let delay_only = std::env::var("SQM_TEST_SKETCH_DELAY_ONLY").ok().filter(|w| !w.is_empty());
        SketchBackend {
            loaded: false,
            delay: std::time::Duration::from_millis(ms.min(3_600_000)),
            ignore_cancel,
            delay_only,
        }
    }
}

impl SketchBackend {
    /// Sleeps out the test delay; `false` when cancelled meanwhile.
    fn pause(&self, job: &RenderJob, cancel: &dyn Fn() -> bool) -> bool {
        if self.delay_only.as_ref().is_some_and(|w| !job.positive_prompt.contains(w.as_str())) {
            return true;
        }
        let until = std::time::Instant::now() + self.delay;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) {
            if !self.ignore_cancel && cancel() {
                return false;
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
        }
        true
    }
}

impl Backend for SketchBackend {
    fn name(&self) -> &'static str {
        "sketch"
    }

    fn model(&self) -> Option<String> {
        Some("sketch-v1".into())
    }

    fn load(&mut self) -> Result<(), RenderError> {
        self.loaded = true;
        Ok(())
    }

    fn is_loaded(&self) -> bool {
        self.loaded
    }

    fn render(
        &mut self,
        job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Option<Image>, RenderError> {
        super::validate_job(job)?;
        if cancel() || !self.pause(job, cancel) || cancel() {
            return Err(RenderError::Cancelled);
        }
        self.loaded = true;
        let img = sketch(job);
        progress(1, 1);
        Ok(Some(img))
    }
}

use crate::rng::SplitMix64 as Rng;

type Rgb = [f32; 3];

/// Colours for one mood: sky top, sky bottom (horizon), ground, accent.
#[derive(Clone, Copy)]
struct Palette {
    top: Rgb,
    horizon: Rgb,
    ground: Rgb,
    accent: Rgb,
}

fn hex(c: u32) -> Rgb {
    [((c >> 16) & 0xff) as f32, ((c >> 8) & 0xff) as f32, (c & 0xff) as f32]
}

/// The palette follows the cue's mood words (and time of day).
fn palette(mood: &str) -> Palette {
    let m = mood.to_lowercase();
    let p = |top, horizon, ground, accent| Palette {
        top: hex(top),
        horizon: hex(horizon),
        ground: hex(ground),
        accent: hex(accent),
    };
    let mut pal = if m.contains("ominous") || m.contains("dread") {
        p(0x1b2230, 0x4a5566, 0x15181d, 0x9fb3c8)
    } else if m.contains("tense") {
        p(0x2a1d12, 0x8a5a2b, 0x1f1710, 0xf0a040)
    } else if m.contains("mystical") || m.contains("magic") {
        p(0x221338, 0x5a3d8a, 0x14202a, 0x6fe0d0)
    } else if m.contains("dramatic") || m.contains("combat") {
        p(0x3a0f0f, 0xc2562a, 0x1c1010, 0xffc060)
    } else if m.contains("melanchol") || m.contains("sorrow") {
        p(0x3b4250, 0x8a93a0, 0x2c3038, 0xc8d0dc)
    } else {
        p(0x4a5a6a, 0xc9b48a, 0x4a4030, 0xf2d28a)
    };
    if m.contains("night") {
        pal.top = mix(pal.top, hex(0x05070f), 0.6);
        pal.horizon = mix(pal.horizon, hex(0x1a2238), 0.5);
    } else if m.contains("dusk") {
        pal.horizon = mix(pal.horizon, hex(0xe07040), 0.45);
    } else if m.contains("dawn") {
        pal.horizon = mix(pal.horizon, hex(0xf0b0a0), 0.45);
    }
    pal
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn to_u8(c: Rgb) -> [u8; 3] {
    [c[0].clamp(0.0, 255.0) as u8, c[1].clamp(0.0, 255.0) as u8, c[2].clamp(0.0, 255.0) as u8]
}

struct Canvas {
    img: Image,
}

impl Canvas {
    fn set(&mut self, x: u32, y: u32, c: Rgb) {
        let i = (y as usize * self.img.width as usize + x as usize) * 3;
        self.img.rgb[i..i + 3].copy_from_slice(&to_u8(c));
    }

    fn get(&self, x: u32, y: u32) -> Rgb {
        let i = (y as usize * self.img.width as usize + x as usize) * 3;
        [self.img.rgb[i] as f32, self.img.rgb[i + 1] as f32, self.img.rgb[i + 2] as f32]
    }

    /// Blends `c` into the pixels where `inside(x, y)` holds, within a box.
    #[allow(clippy::too_many_arguments)] // a rectangle, a colour and a shape test
    fn fill(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Rgb, alpha: f32, inside: impl Fn(f32, f32) -> bool) {
        let (w, h) = (self.img.width as f32, self.img.height as f32);
        let (xa, xb) = (x0.max(0.0) as u32, x1.min(w - 1.0).max(0.0) as u32);
        let (ya, yb) = (y0.max(0.0) as u32, y1.min(h - 1.0).max(0.0) as u32);
        for y in ya..=yb {
            for x in xa..=xb {
                if inside(x as f32 + 0.5, y as f32 + 0.5) {
                    let old = self.get(x, y);
                    self.set(x, y, mix(old, c, alpha));
                }
            }
        }
    }

    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, c: Rgb, alpha: f32) {
        self.fill(cx - rx, cy - ry, cx + rx, cy + ry, c, alpha, |x, y| {
            let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
            dx * dx + dy * dy <= 1.0
        });
    }
}

/// 1-D value noise in [0, 1], smooth, from seeded lattice values.
fn ridge(rng: &mut Rng, width: u32, cells: u32) -> Vec<f32> {
    let lattice: Vec<f32> = (0..=cells + 1).map(|_| rng.unit_f32()).collect();
    (0..width)
        .map(|x| {
            let t = x as f32 / width as f32 * cells as f32;
            let i = t as usize;
            let f = t - i as f32;
            let s = f * f * (3.0 - 2.0 * f);
            lattice[i] + (lattice[i + 1] - lattice[i]) * s
        })
        .collect()
}

fn sketch(job: &RenderJob) -> Image {
    let (w, h) = (job.width, job.height);
    let mut rng = Rng::new(u64::from(job.seed) ^ 0x5EED_5EED_0000_0000);
    let pal = palette(&job.mood);
    let mut cv = Canvas { img: Image::new(w, h) };
    let (wf, hf) = (w as f32, h as f32);

    match job.tier {
        Tier::Landscape | Tier::SceneIllustration => {
            let horizon = hf * if job.tier == Tier::Landscape { 0.6 } else { 0.55 };
            // Sky and ground gradients.
            for y in 0..h {
                let yf = y as f32;
                let c = if yf < horizon {
                    mix(pal.top, pal.horizon, yf / horizon)
                } else {
                    mix(pal.ground, pal.top, 0.15 * (1.0 - (yf - horizon) / (hf - horizon)))
                };
                for x in 0..w {
                    cv.set(x, y, c);
                }
            }
            // A sun or moon.
            let (sx, sy) = (wf * (0.2 + 0.6 * rng.unit_f32()), horizon * (0.25 + 0.4 * rng.unit_f32()));
            cv.ellipse(sx, sy, wf * 0.06, wf * 0.06, pal.accent, 0.85);
            cv.ellipse(sx, sy, wf * 0.11, wf * 0.11, pal.accent, 0.15);
            // Ridges, far to near.
            let layers = if job.tier == Tier::Landscape { 3 } else { 1 };
            for layer in 0..layers {
                let line = ridge(&mut rng, w, 4 + layer * 3);
                let base = horizon - hf * 0.02 * layer as f32;
                let amp = hf * (0.22 - 0.05 * layer as f32);
                let c = mix(pal.ground, pal.horizon, 0.55 - 0.2 * layer as f32);
                for x in 0..w {
                    let top = (base - line[x as usize] * amp).max(0.0) as u32;
                    for y in top..(horizon as u32).min(h) {
                        cv.set(x, y, c);
                    }
                }
            }
            if job.tier == Tier::SceneIllustration {
                // Figures standing at different depths.
                let n = 2 + (rng.next_u64() % 3) as u32;
                for i in 0..n {
                    let depth = 0.4 + 0.6 * rng.unit_f32();
                    let fh = hf * 0.32 * depth;
                    let fx = wf * ((i as f32 + 0.5 + 0.4 * (rng.unit_f32() - 0.5)) / n as f32);
                    let feet = horizon + (hf - horizon) * 0.8 * depth;
                    let ink = mix(pal.ground, [0.0; 3], 0.6);
                    cv.ellipse(fx, feet - fh * 0.45, fh * 0.16, fh * 0.38, ink, 1.0);
                    cv.ellipse(fx, feet - fh * 0.9, fh * 0.1, fh * 0.1, ink, 1.0);
                    cv.ellipse(fx + fh * 0.06, feet - fh * 0.9, fh * 0.1, fh * 0.1, pal.accent, 0.25);
                }
            }
        }
        Tier::Portrait | Tier::PortraitSquare => {
            let (cx, cy) = (wf / 2.0, hf * 0.42);
            let r = (wf * wf + hf * hf).sqrt() / 2.0;
            for y in 0..h {
                for x in 0..w {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / r;
                    cv.set(x, y, mix(pal.horizon, pal.top, d.min(1.0)));
                }
            }
            let ink = mix(pal.ground, [0.0; 3], 0.5);
            let head = wf.min(hf) * 0.15;
            cv.ellipse(cx, hf * 0.95, wf * 0.38, hf * 0.32, ink, 1.0);
            cv.ellipse(cx, cy + head * 1.1, head * 0.45, head * 0.8, ink, 1.0);
            cv.ellipse(cx, cy, head * 0.85, head, ink, 1.0);
            // Rim light from the side the seed picks.
            let side = if rng.next_u64() % 2 == 0 { -1.0 } else { 1.0 };
            cv.ellipse(cx + side * head * 0.25, cy - head * 0.1, head * 0.55, head * 0.85, pal.accent, 0.18);
        }
        Tier::TextOverlay | Tier::Cartography => {
            let paper = hex(0xd9c9a3);
            let lattice = ridge(&mut rng, w, 64);
            for y in 0..h {
                for x in 0..w {
                    let grain = (lattice[((x + y * 7) % w) as usize] - 0.5) * 18.0;
                    let c = mix(paper, pal.ground, 0.12);
                    cv.set(x, y, [c[0] + grain, c[1] + grain, c[2] + grain]);
                }
            }
            if job.tier == Tier::Cartography {
                // A coastline: a blob whose radius wanders with the angle.
                let edge = ridge(&mut rng, 360, 9);
                let (cx, cy, rr) = (wf / 2.0, hf * 0.45, wf.min(hf) * 0.3);
                let land = mix(pal.ground, paper, 0.55);
                cv.fill(0.0, 0.0, wf, hf, land, 1.0, |x, y| {
                    let a = ((y - cy).atan2(x - cx).to_degrees() + 360.0) as usize % 360;
                    ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() < rr * (0.7 + 0.6 * edge[a])
                });
                let grid = mix(paper, [60.0, 50.0, 40.0], 0.35);
                let step = (wf / 8.0) as u32;
                for y in 0..h {
                    for x in 0..w {
                        if x % step == 0 || y % step == 0 {
                            let old = cv.get(x, y);
                            cv.set(x, y, mix(old, grid, 0.5));
                        }
                    }
                }
                cv.ellipse(wf * 0.88, hf * 0.12, wf * 0.04, wf * 0.04, pal.accent, 0.8);
            } else {
                let lines = wrap(&job.subject, 22, 6);
                let scale = (wf / (22.0 * 6.0 + 8.0)).max(1.0) as u32;
                let total = lines.len() as u32 * 9 * scale;
                let mut y = (hf * 0.42) as i64 - i64::from(total / 2);
                for line in lines {
                    let x = (i64::from(w) - i64::from(text_width(&line, scale))) / 2;
                    draw_text(&mut cv.img, x, y, scale, [40, 28, 20], &line);
                    y += i64::from(9 * scale);
                }
            }
        }
    }

    caption(&mut cv, job);
    cv.img
}

/// The bottom band: "SKETCH · TIER" and the subject, so the picture reads as
/// a placeholder for art, and says what it stands for.
fn caption(cv: &mut Canvas, job: &RenderJob) {
    let (w, h) = (cv.img.width, cv.img.height);
    let scale = (w / 320).max(1);
    let band = 9 * scale * 3 + 4 * scale;
    let top = h.saturating_sub(band);
    for y in top..h {
        for x in 0..w {
            let old = cv.get(x, y);
            cv.set(x, y, mix(old, [0.0; 3], 0.65));
        }
    }
    let label = format!("SKETCH · {}", job.tier.name().replace('_', " "));
    let x0 = i64::from(4 * scale);
    draw_text(&mut cv.img, x0, i64::from(top + 2 * scale), scale, [235, 200, 120], &label);
    let max_chars = ((w - 8 * scale) / (6 * scale)) as usize;
    for (i, line) in wrap(&job.subject, max_chars.max(4), 2).iter().enumerate() {
        let y = i64::from(top + 2 * scale + (i as u32 + 1) * 9 * scale);
        draw_text(&mut cv.img, x0, y, scale, [230, 230, 230], line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{TierSpec, Variant};

    fn job(tier: Tier, seed: u32, mood: &str) -> RenderJob {
        let spec = TierSpec::of(tier);
        RenderJob {
            tier,
            positive_prompt: "p".into(),
            negative_prompt: String::new(),
            seed,
            width: spec.width,
            height: spec.height,
            steps: spec.steps,
            guidance: spec.guidance,
            variant: Variant::Dev,
            subject: "orc warrior".into(),
            mood: mood.into(),
            post: None,
            init: None,
            control: None,
            loras: Vec::new(),
        }
    }

    fn render(j: &RenderJob) -> Image {
        let mut calls = Vec::new();
        let img = SketchBackend::default().render(j, &mut |s, n| calls.push((s, n)), &|| false).unwrap().unwrap();
        assert_eq!(calls, vec![(1, 1)]);
        img
    }

    #[test]
    fn every_tier_has_its_canvas_and_is_deterministic() {
        for tier in Tier::ALL {
            let a = render(&job(tier, 7, "dusk, ominous"));
            let spec = TierSpec::of(tier);
            assert_eq!((a.width, a.height), (spec.width, spec.height));
            assert_eq!(a, render(&job(tier, 7, "dusk, ominous")), "{tier}");
        }
    }

    #[test]
    fn seed_and_mood_change_the_picture() {
        let a = render(&job(Tier::Landscape, 1, "ominous"));
        let b = render(&job(Tier::Landscape, 2, "ominous"));
        let c = render(&job(Tier::Landscape, 1, "mystical"));
        assert_ne!(a.rgb, b.rgb);
        assert_ne!(a.rgb, c.rgb);
    }

    #[test]
    fn cancel_and_bad_canvas() {
        let j = job(Tier::Portrait, 1, "");
        assert!(matches!(SketchBackend::default().render(&j, &mut |_, _| {}, &|| true), Err(RenderError::Cancelled)));
        let mut bad = j.clone();
        bad.width = 100_000;
        assert!(matches!(
            SketchBackend::default().render(&bad, &mut |_, _| {}, &|| false),
            Err(RenderError::Invalid(_))
        ));
    }
}
