//! Asset references: a path named by a pack file must stay inside the
//! pack, exist, be a regular file of sane size, and (for audio) decode.

use std::path::Path;

use super::diag::Code;
use super::probe::Probe;
use super::validate::Validator;
use crate::pack::resolve_in_pack;
use crate::pack::yaml::Node;

impl Validator<'_> {
    /// Checks an asset path named in `rel` (relative to that file's folder).
    pub(super) fn asset(&mut self, rel: &str, node: &Node, what: &str) {
        let Some(raw) = node.as_str() else {
            if node.is_null() {
                self.error(Code::InvalidValue, rel, node.pos, format!("{what} must be a non-empty path"));
            } else {
                self.type_error(rel, node, what, "a path string");
            }
            return;
        };
        if raw.trim().is_empty() {
            self.error(Code::InvalidValue, rel, node.pos, format!("{what} must be a non-empty path"));
            return;
        }
        if raw.starts_with("http://") || raw.starts_with("https://") {
            self.warn(
                Code::AssetRemote,
                rel,
                node.pos,
                format!("remote asset {raw} is not checked and cannot be played by sqm"),
            )
            .hint("ship the file inside the pack and use a relative path");
            return;
        }
        let base = Path::new(rel).parent().unwrap_or(Path::new(""));
        let Some(in_pack) = resolve_in_pack(base, raw) else {
            self.error(Code::PathEscapesPack, rel, node.pos, format!("path {raw} leaves the pack"))
                .hint("asset paths are relative to the YAML file and must stay inside the pack");
            return;
        };
        let full = self.pack.root.join(&in_pack);
        if std::fs::symlink_metadata(&full).is_err() {
            self.error(Code::MissingAsset, rel, node.pos, format!("file not found: {raw}"));
            return;
        }
        let canonical = match full.canonicalize() {
            Ok(c) => c,
            Err(_) => {
                self.error(
                    Code::MissingAsset,
                    rel,
                    node.pos,
                    format!("file not found: {raw} (a symlink that points nowhere)"),
                );
                return;
            }
        };
        if !canonical.starts_with(&self.canonical_root) {
            self.error(
                Code::PathEscapesPack,
                rel,
                node.pos,
                format!("path {raw} is a symlink that resolves outside the pack ({})", canonical.display()),
            )
            .hint("copy the file into the pack instead of linking to it");
            return;
        }
        if !canonical.is_file() {
            self.error(Code::MissingAsset, rel, node.pos, format!("not a file: {raw}"));
            return;
        }
        if !self.opts.decode {
            return;
        }
        match self.cache.probe(&canonical) {
            Probe::Ok { .. } => {}
            Probe::Unsupported(why) => {
                self.warn(Code::AssetUnsupported, rel, node.pos, format!("{raw}: {why}"));
            }
            Probe::Undecodable(why) => {
                self.error(Code::AssetUndecodable, rel, node.pos, format!("{raw}: {why}"));
            }
        }
    }
}
