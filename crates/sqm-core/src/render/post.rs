//! Camera post directives applied to a rendered image (composer-v2.md §6):
//! the centre crop of `extreme_closeup_leone` and the bicubic rotations.
//! The composer decides the directive and the bigger canvas; this is the
//! pixel work after the backend drew it.

use super::Image;
use crate::pack::direction::Post;

/// Applies a post directive to a rendered image, returning w×h.
pub fn apply_post(post: &Post, img: &Image, w: u32, h: u32) -> Image {
    let src = if post.kind == "rotate" { rotate(img, post.degrees.unwrap_or(0.0)) } else { img.clone() };
    let (x0, y0) = ((src.width.saturating_sub(w)) / 2, (src.height.saturating_sub(h)) / 2);
    let mut out = Image::new(w, h);
    for y in 0..h.min(src.height) {
        let s = (((y0 + y) * src.width + x0) * 3) as usize;
        let d = (y * w * 3) as usize;
        let n = (w.min(src.width) * 3) as usize;
        out.rgb[d..d + n].copy_from_slice(&src.rgb[s..s + n]);
    }
    out
}

/// Rotates counter-clockwise about the centre with bicubic sampling,
/// keeping the canvas (corners outside the source are black).
fn rotate(img: &Image, degrees: f64) -> Image {
    let (w, h) = (img.width as i64, img.height as i64);
    let mut out = Image::new(img.width, img.height);
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let px = |x: i64, y: i64, ch: usize| -> f64 {
        let (x, y) = (x.clamp(0, w - 1), y.clamp(0, h - 1));
        img.rgb[((y * w + x) * 3) as usize + ch] as f64
    };
    let cubic = |t: f64| -> [f64; 4] {
        // Catmull-Rom weights.
        let t2 = t * t;
        let t3 = t2 * t;
        [-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2]
    };
    for y in 0..h {
        for x in 0..w {
            // Inverse map: a counter-clockwise rotation on screen (y down).
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let sx = c * dx - s * dy + cx;
            let sy = s * dx + c * dy + cy;
            if sx < -0.5 || sy < -0.5 || sx > w as f64 - 0.5 || sy > h as f64 - 0.5 {
                continue;
            }
            let (ix, iy) = (sx.floor() as i64, sy.floor() as i64);
            let (wx, wy) = (cubic(sx - ix as f64), cubic(sy - iy as f64));
            for ch in 0..3 {
                let mut acc = 0.0;
                for (j, wyj) in wy.iter().enumerate() {
                    for (i, wxi) in wx.iter().enumerate() {
                        acc += wxi * wyj * px(ix + i as i64 - 1, iy + j as i64 - 1, ch);
                    }
                }
                out.rgb[((y * w + x) * 3) as usize + ch] = acc.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}
