//! The text-only backend: accepts every job, draws nothing, writes no file.

use super::{Backend, Image, RenderError, RenderJob};

#[derive(Debug, Default)]
pub struct NullBackend;

impl Backend for NullBackend {
    fn name(&self) -> &'static str {
        "null"
    }

    fn load(&mut self) -> Result<(), RenderError> {
        Ok(())
    }

    fn is_loaded(&self) -> bool {
        true
    }

    fn render(
        &mut self,
        _job: &RenderJob,
        progress: &mut dyn FnMut(u32, u32),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Option<Image>, RenderError> {
        if cancel() {
            return Err(RenderError::Cancelled);
        }
        progress(1, 1);
        Ok(None)
    }
}
