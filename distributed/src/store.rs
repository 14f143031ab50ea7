//! [`Store`]: c10d's `TCPStore`, the key-value rendezvous every process of a group meets at.
//!
//! One process (rank 0, or torchrun's agent) hosts the store's server on `host:port`; every
//! other process connects to it as a client. Process groups exchange their addresses through
//! it, and users can share small values (`set`/`get`/`add`).

use crate::ffi::{self, c_string, check, RawStore};
use couplet_modules::{Error, Result};
use std::time::Duration;

/// A handle on a c10d store (a `TCPStore`, or a `PrefixStore` over one).
///
/// Cheap to share across threads (c10d's stores are thread-safe). Dropping the handle of the
/// process that hosts the server stops the server.
pub struct Store {
    raw: *mut RawStore,
    port: u16,
}

// SAFETY: c10d::Store implementations synchronize internally (TCPStore guards its client
// socket with a mutex), and the handle owns its intrusive pointer exclusively.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

/// Milliseconds of `timeout`, refusing zero and durations past `i64::MAX` milliseconds.
pub(crate) fn timeout_ms(op: &str, timeout: Duration) -> Result<i64> {
    let ms = i64::try_from(timeout.as_millis()).map_err(|_| {
        Error::distributed(op, format!("timeout {timeout:?} is too long (at most i64::MAX ms)"))
    })?;
    if ms == 0 {
        return Err(Error::distributed(op, format!("timeout must be at least 1 ms, got {timeout:?}")));
    }
    Ok(ms)
}

impl Store {
    /// Hosts a `TCPStore` server on `host:port` and connects to it. `port` 0 binds a free port
    /// ([`Store::port`] tells which). The call returns once `world_size` processes (this one
    /// included) have connected, or fails with [`Error::Distributed`] after `timeout`, which is
    /// also the timeout of every later `get`.
    ///
    /// Errors: an empty host, a zero world size or timeout, a port already in use.
    pub fn server(host: &str, port: u16, world_size: usize, timeout: Duration) -> Result<Store> {
        if world_size == 0 {
            return Err(Error::distributed("store", "world size must be at least 1, got 0"));
        }
        let world = i64::try_from(world_size)
            .map_err(|_| Error::distributed("store", format!("world size {world_size} is too large")))?;
        Store::tcp(host, port, true, world, timeout)
    }

    /// Connects to the `TCPStore` server on `host:port`, retrying until `timeout`.
    ///
    /// Errors ([`Error::Distributed`]): an empty host, port 0, a zero timeout, no server
    /// reachable within the timeout.
    pub fn client(host: &str, port: u16, timeout: Duration) -> Result<Store> {
        if port == 0 {
            return Err(Error::distributed("store", "a client needs the server's port, got 0"));
        }
        Store::tcp(host, port, false, 0, timeout)
    }

    fn tcp(host: &str, port: u16, is_server: bool, world_size: i64, timeout: Duration) -> Result<Store> {
        if host.is_empty() {
            return Err(Error::distributed("store", "host must not be empty"));
        }
        let ms = timeout_ms("store", timeout)?;
        let c_host = c_string("store", "host", host)?;
        let mut raw = std::ptr::null_mut();
        let mut bound = 0u16;
        // SAFETY: valid C string and out-pointers; the shim catches every C++ exception.
        let message = unsafe {
            ffi::cpl_store_tcp(c_host.as_ptr(), port, is_server, world_size, ms, &mut bound, &mut raw)
        };
        check("store", message).map_err(|e| match e {
            Error::Distributed { op, message } => {
                let role = if is_server { "hosting" } else { "connecting to" };
                Error::distributed(op, format!("{role} {host}:{port}: {message}"))
            }
            other => other,
        })?;
        Ok(Store { raw, port: bound })
    }

    /// The server's TCP port (the bound one when the server was asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A store whose keys all live under `prefix` in this one (c10d's `PrefixStore`, which
    /// joins them as `prefix/key`), as torch.distributed separates its process groups.
    pub fn prefixed(&self, prefix: &str) -> Result<Store> {
        let c_prefix = c_string("store", "prefix", prefix)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: self.raw is live for the call; the new store holds its own reference.
        check("store", unsafe { ffi::cpl_store_prefix(self.raw, c_prefix.as_ptr(), &mut raw) })?;
        Ok(Store { raw, port: self.port })
    }

    /// Sets `key` to `value`, waking every process waiting for it in [`Store::get`].
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let c_key = c_string("store", "key", key)?;
        // SAFETY: value is a live slice of value.len() bytes.
        check("store", unsafe { ffi::cpl_store_set(self.raw, c_key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// The value of `key`, waiting for another process to set it until the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let c_key = c_string("store", "key", key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: out-pointers valid; on success data holds len bytes from malloc, copied
        // and freed here.
        check("store", unsafe { ffi::cpl_store_get(self.raw, c_key.as_ptr(), &mut data, &mut len) })?;
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ffi::cpl_free(data.cast()) };
        Ok(value)
    }

    /// Adds `delta` to the integer stored at `key` (0 when unset) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let c_key = c_string("store", "key", key)?;
        let mut value = 0i64;
        // SAFETY: out-pointer valid.
        check("store", unsafe { ffi::cpl_store_add(self.raw, c_key.as_ptr(), delta, &mut value) })?;
        Ok(value)
    }

    /// Changes the timeout of later [`Store::get`] calls.
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        let ms = timeout_ms("store", timeout)?;
        // SAFETY: self.raw is live.
        check("store", unsafe { ffi::cpl_store_set_timeout(self.raw, ms) })
    }

    pub(crate) fn raw(&self) -> *mut RawStore {
        self.raw
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: raw came from the shim and is freed once.
        unsafe { ffi::cpl_store_free(self.raw) }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("port", &self.port).finish()
    }
}
