//! Narration interpretation (placeholder module file; filled in below).
