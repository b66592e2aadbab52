//! The thread that owns the image backend.
//!
//! The render lane hands it one task at a time and waits for the answer
//! with a deadline (the render watchdog, remote-and-telemetry.md §6). A
//! backend stuck past the deadline and its grace period cannot be killed:
//! its thread is abandoned (whatever it returns later is dropped with the
//! channel) and the lane builds a fresh backend on a new thread.

use std::sync::mpsc;

use crate::render::Backend;

/// Builds a fresh backend instance (after one was abandoned).
pub type BackendFactory = Box<dyn FnMut() -> Result<Box<dyn Backend>, String> + Send>;

type Task = Box<dyn FnOnce(&mut dyn Backend) + Send>;

pub(crate) struct BackendThread {
    tasks: mpsc::Sender<Task>,
}

impl BackendThread {
    /// Starts the thread; it runs at background priority (renders yield
    /// the cores to the connections and the embed lane).
    pub(crate) fn spawn(mut backend: Box<dyn Backend>) -> BackendThread {
        let (tasks, queue) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("sqm-render".into())
            .spawn(move || {
                super::scheduler::background_priority();
                for task in queue {
                    task(&mut *backend);
                }
            })
            .expect("spawn the render backend thread");
        BackendThread { tasks }
    }

    /// Runs `f` on the backend; the answer arrives on the returned channel
    /// (which reports disconnection if the backend panicked).
    pub(crate) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Backend) -> R + Send + 'static,
    ) -> mpsc::Receiver<R> {
        let (answer, rx) = mpsc::sync_channel(1);
        let _ = self.tasks.send(Box::new(move |backend| {
            let _ = answer.send(f(backend));
        }));
        rx
    }
}
