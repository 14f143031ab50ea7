//! [`Work`]: the handle of an asynchronous collective.

use crate::ffi::{self, check, RawWork};
use crate::store::timeout_ms;
use couplet_modules::{Result, TorchContext};
use std::time::Duration;
use tch::Tensor;

/// What is left to do on this process once c10d's work is done: Gloo has no average, so an
/// average is a sum divided by the world size here.
pub(crate) enum Finish {
    Nothing,
    Divide(Tensor, i64),
}

/// An asynchronous collective in flight (c10d's `Work`).
///
/// The tensors handed to the collective must not be read or written until [`Work::wait`]
/// returns. Dropping a handle without waiting lets the collective run to its end in c10d's
/// threads (its tensors stay alive), but skips any finishing step (the division of an
/// average), so wait for every handle whose result is used.
pub struct Work {
    raw: *mut RawWork,
    op: &'static str,
    finish: Finish,
}

// SAFETY: c10d's Work is synchronized (mutex and condition variable) and owned exclusively.
unsafe impl Send for Work {}

impl Work {
    pub(crate) fn new(raw: *mut RawWork, op: &'static str, finish: Finish) -> Work {
        Work { raw, op, finish }
    }

    /// Waits for the collective to finish. Errors ([`couplet_modules::Error::Distributed`]
    /// naming the collective): a peer that died or disconnected, a peer that did not join
    /// within the group's timeout, a collective refused by c10d.
    pub fn wait(self) -> Result<()> {
        self.wait_ms(0)
    }

    /// As [`Work::wait`], but gives up after `timeout` (the collective may still be running
    /// in c10d then; the group's own timeout ends it).
    pub fn wait_timeout(self, timeout: Duration) -> Result<()> {
        let ms = timeout_ms(self.op, timeout)?;
        self.wait_ms(ms)
    }

    fn wait_ms(mut self, ms: i64) -> Result<()> {
        // SAFETY: self.raw is live until drop.
        check(self.op, unsafe { ffi::cpl_work_wait(self.raw, ms) })?;
        if let Finish::Divide(tensor, by) = std::mem::replace(&mut self.finish, Finish::Nothing) {
            let mut tensor = tensor;
            let _ = tensor.f_div_scalar_(by).ctx(self.op)?;
        }
        Ok(())
    }

    /// Whether the collective has finished (successfully or not); never blocks.
    pub fn is_completed(&self) -> Result<bool> {
        let mut done = false;
        // SAFETY: self.raw is live; out-pointer valid.
        check(self.op, unsafe { ffi::cpl_work_is_completed(self.raw, &mut done) })?;
        Ok(done)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: raw came from the shim and is freed once.
        unsafe { ffi::cpl_work_free(self.raw) }
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").field("op", &self.op).finish()
    }
}
