//! The C interface of `cpp/shim.h` and the conversion of its error messages.
//!
//! Every call that can fail returns a null pointer on success or a malloc'd message, which
//! [`check`] turns into [`Error::Distributed`] naming the operation and frees.

use couplet_modules::{Error, Result};
use std::ffi::{c_char, c_int, CStr};
use torch_sys::C_tensor;

#[repr(C)]
pub(crate) struct RawStore {
    _private: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawGroup {
    _private: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawWork {
    _private: [u8; 0],
}

extern "C" {
    pub(crate) fn cpl_free(pointer: *mut std::ffi::c_void);
    pub(crate) fn cpl_store_tcp(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i64,
        timeout_ms: i64,
        bound_port: *mut u16,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    pub(crate) fn cpl_store_prefix(
        store: *mut RawStore,
        prefix: *const c_char,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    pub(crate) fn cpl_store_set(
        store: *mut RawStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    pub(crate) fn cpl_store_get(
        store: *mut RawStore,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> *mut c_char;
    pub(crate) fn cpl_store_add(
        store: *mut RawStore,
        key: *const c_char,
        delta: i64,
        out: *mut i64,
    ) -> *mut c_char;
    pub(crate) fn cpl_store_set_timeout(store: *mut RawStore, timeout_ms: i64) -> *mut c_char;
    pub(crate) fn cpl_store_free(store: *mut RawStore);

    pub(crate) fn cpl_group_gloo(
        store: *mut RawStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub(crate) fn cpl_has_nccl() -> bool;
    pub(crate) fn cpl_group_nccl(
        store: *mut RawStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    pub(crate) fn cpl_group_free(group: *mut RawGroup);

    pub(crate) fn cpl_all_reduce(
        group: *mut RawGroup,
        tensor: *mut C_tensor,
        op: c_int,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    pub(crate) fn cpl_broadcast(
        group: *mut RawGroup,
        tensor: *mut C_tensor,
        root: c_int,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    pub(crate) fn cpl_all_gather(
        group: *mut RawGroup,
        outputs: *const *mut C_tensor,
        n: usize,
        input: *mut C_tensor,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    pub(crate) fn cpl_reduce_scatter(
        group: *mut RawGroup,
        output: *mut C_tensor,
        inputs: *const *mut C_tensor,
        n: usize,
        op: c_int,
        out: *mut *mut RawWork,
    ) -> *mut c_char;
    pub(crate) fn cpl_barrier(group: *mut RawGroup, out: *mut *mut RawWork) -> *mut c_char;

    pub(crate) fn cpl_set_grad(variable: *mut C_tensor, grad: *mut C_tensor) -> *mut c_char;
    pub(crate) fn cpl_work_wait(work: *mut RawWork, timeout_ms: i64) -> *mut c_char;
    pub(crate) fn cpl_work_is_completed(work: *mut RawWork, out: *mut bool) -> *mut c_char;
    pub(crate) fn cpl_work_free(work: *mut RawWork);
}

/// `Ok(())` for a null message, else the message as [`Error::Distributed`] (freed here).
pub(crate) fn check(op: &str, message: *mut c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result of the shim is a NUL-terminated string from malloc, owned by
    // the caller; it is read once and freed once.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().trim_end().to_string();
    unsafe { cpl_free(message.cast()) };
    Err(Error::distributed(op, text))
}

/// `text` as a C string, refusing interior NUL bytes.
pub(crate) fn c_string(op: &str, what: &str, text: &str) -> Result<std::ffi::CString> {
    std::ffi::CString::new(text)
        .map_err(|_| Error::distributed(op, format!("{what} {text:?} contains a NUL byte")))
}
