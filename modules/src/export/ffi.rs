//! Safe wrappers over the C++ tracing shim `modules/cpp/trace.cpp` (compiled by the build
//! script against libtorch's headers). Every shim function returns `NULL` or a malloc'd
//! error message; [`check`] turns the latter into a `String`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn couplet_free_message(m: *mut c_char);
    fn couplet_module_new(class_name: *const c_char, out: *mut *mut c_void) -> *mut c_char;
    fn couplet_module_free(m: *mut c_void);
    fn couplet_module_register(
        m: *mut c_void,
        path: *const c_char,
        t: *const C_tensor,
        is_buffer: c_int,
    ) -> *mut c_char;
    fn couplet_trace_begin(m: *mut c_void, inputs: *const *const C_tensor, n: c_int) -> *mut c_char;
    fn couplet_trace_abandon();
    fn couplet_is_tracing() -> c_int;
    fn couplet_trace_check_size(t: *const C_tensor, dim: i64, what: *const c_char) -> *mut c_char;
    fn couplet_trace_end(
        m: *mut c_void,
        name: *const c_char,
        outputs: *const *const C_tensor,
        n: c_int,
    ) -> *mut c_char;
    fn couplet_module_save(m: *mut c_void, path: *const c_char) -> *mut c_char;
    fn couplet_module_save_bytes(m: *mut c_void, data: *mut *mut c_char, len: *mut usize) -> *mut c_char;
}

/// The shim's error message, if any (and frees it).
fn check(message: *mut c_char) -> Result<(), String> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string malloc'd by the shim, freed once here.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { couplet_free_message(message) };
    Err(text)
}

fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("{text:?} contains a NUL byte"))
}

fn count(n: usize) -> Result<c_int, String> {
    c_int::try_from(n).map_err(|_| format!("{n} tensors are too many for one trace"))
}

/// Whether libtorch's tracer is recording on this thread.
pub(crate) fn is_tracing() -> bool {
    // SAFETY: reads a thread-local pointer.
    unsafe { couplet_is_tracing() != 0 }
}

/// A TorchScript module being assembled: owned `torch::jit::Module` plus the tensors
/// registered in it.
pub(crate) struct RawModule(*mut c_void);

// SAFETY: the module is only reached through `&mut self`/`&self` methods of this type, and a
// `torch::jit::Module` may move between threads (tracing state is thread-local and is begun
// and ended within one `Exporter::trace` call).
unsafe impl Send for RawModule {}

impl RawModule {
    /// A module of class `__torch__.couplet.{class_name}`.
    pub(crate) fn new(class_name: &str) -> Result<RawModule, String> {
        let name = c_string(class_name)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: `name` outlives the call; `out` is written on success.
        check(unsafe { couplet_module_new(name.as_ptr(), &mut out) })?;
        Ok(RawModule(out))
    }

    /// Registers `tensor` (shared, not copied) at the dotted `path`, as a parameter or a buffer.
    pub(crate) fn register(&mut self, path: &str, tensor: &Tensor, buffer: bool) -> Result<(), String> {
        let path = c_string(path)?;
        // SAFETY: the module and tensor pointers are live for the call.
        check(unsafe { couplet_module_register(self.0, path.as_ptr(), tensor.as_ptr(), c_int::from(buffer)) })
    }

    /// Starts recording on this thread with `inputs` as the graph's inputs.
    pub(crate) fn begin(&mut self, inputs: &[Tensor]) -> Result<(), String> {
        let ptrs: Vec<*const C_tensor> = inputs.iter().map(Tensor::as_ptr).collect();
        // SAFETY: the pointers are live for the call.
        check(unsafe { couplet_trace_begin(self.0, ptrs.as_ptr(), count(ptrs.len())?) })
    }

    /// Stops recording and adds the graph with `outputs` as method `name`.
    pub(crate) fn end(&mut self, name: &str, outputs: &[Tensor]) -> Result<(), String> {
        let name = c_string(name).inspect_err(|_| abandon())?;
        let ptrs: Vec<*const C_tensor> = outputs.iter().map(Tensor::as_ptr).collect();
        let n = count(ptrs.len()).inspect_err(|_| abandon())?;
        // SAFETY: the pointers are live for the call.
        check(unsafe { couplet_trace_end(self.0, name.as_ptr(), ptrs.as_ptr(), n) })
    }

    /// Writes the module to `path` (TorchScript's zip format).
    pub(crate) fn save(&self, path: &str) -> Result<(), String> {
        let path = c_string(path)?;
        // SAFETY: live pointers for the call.
        check(unsafe { couplet_module_save(self.0, path.as_ptr()) })
    }

    /// The module serialized in memory.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: on success the shim sets `data` to a malloc'd buffer of `len` bytes.
        check(unsafe { couplet_module_save_bytes(self.0, &mut data, &mut len) })?;
        // SAFETY: as above; copied out, then freed once.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec();
        unsafe { couplet_free_message(data) };
        Ok(bytes)
    }
}

impl Drop for RawModule {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `couplet_module_new` and is freed once.
        unsafe { couplet_module_free(self.0) }
    }
}

/// Records in the running trace a check of `tensor`'s size in dimension `dim` (valid).
pub(crate) fn check_size(tensor: &Tensor, dim: i64, what: &str) -> Result<(), String> {
    let what = c_string(what)?;
    // SAFETY: the tensor pointer is valid for the call; the message is freed by `check`.
    check(unsafe { couplet_trace_check_size(tensor.as_ptr(), dim, what.as_ptr()) })
}

/// Drops this thread's recording, if any (after a failed traced call).
pub(crate) fn abandon() {
    // SAFETY: only touches this thread's tracing state.
    unsafe { couplet_trace_abandon() }
}
