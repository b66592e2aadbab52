//! Conditioning inputs read off the async threads: an image named by a
//! request (inline or under the allowed folders) attached to its job.

use std::path::{Path, PathBuf};

use crate::render::RenderJob;

/// Runs `attach` on a copy of `job` on a blocking thread, with `roots` as
/// the folders a `uri` may name. Ok: the job with its input; Err(None):
/// the task itself failed.
pub(crate) async fn attach_off_thread<E: Send + 'static>(
    job: RenderJob,
    roots: Vec<PathBuf>,
    attach: impl FnOnce(&mut RenderJob, &[&Path]) -> Result<(), E> + Send + 'static,
) -> Result<RenderJob, Option<E>> {
    let mut job = job;
    let done = tokio::task::spawn_blocking(move || {
        let refs: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
        attach(&mut job, &refs).map(|()| job)
    })
    .await;
    match done {
        Ok(Ok(job)) => Ok(job),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}
