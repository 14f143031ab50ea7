//! [`LaunchEnv`]: the variables torchrun sets for every process it launches.

use crate::store::Store;
use couplet_modules::{Error, Result};
use std::time::Duration;

/// torchrun's description of this process: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
/// `MASTER_PORT` and whether torchrun's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// Global rank, in `0..world_size`.
    pub rank: usize,
    /// Number of processes over all nodes.
    pub world_size: usize,
    /// Rank on this node (the GPU to use with NCCL); 0 when `LOCAL_RANK` is unset.
    pub local_rank: usize,
    /// Host of the store's server.
    pub master_addr: String,
    /// Port of the store's server, in `1..=65535`.
    pub master_port: u16,
    /// Whether torchrun's agent hosts the store (then every rank is a client).
    pub agent_store: bool,
}

impl LaunchEnv {
    /// Reads the variables from this process's environment.
    ///
    /// Errors ([`Error::Config`] `distributed/env`): a missing `RANK`, `WORLD_SIZE`,
    /// `MASTER_ADDR` or `MASTER_PORT`, a value that is not a number, a rank outside
    /// `0..WORLD_SIZE`, a port outside `1..=65535`.
    pub fn from_env() -> Result<LaunchEnv> {
        LaunchEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<LaunchEnv> {
        let get = |name: &str| {
            lookup(name).ok_or_else(|| {
                Error::config(
                    "distributed/env",
                    format!("{name} is not set; launch with torchrun (see README, \"Distributed training\")"),
                )
            })
        };
        let number = |name: &str, value: String| {
            value.trim().parse::<usize>().map_err(|_| {
                Error::config(
                    "distributed/env",
                    format!("{name} must be a non-negative integer, got {value:?}"),
                )
            })
        };
        let rank = number("RANK", get("RANK")?)?;
        let world_size = number("WORLD_SIZE", get("WORLD_SIZE")?)?;
        let local_rank = match lookup("LOCAL_RANK") {
            Some(value) => number("LOCAL_RANK", value)?,
            None => 0,
        };
        if world_size == 0 || rank >= world_size {
            return Err(Error::config(
                "distributed/env",
                format!("RANK must be in 0..WORLD_SIZE, got RANK={rank} WORLD_SIZE={world_size}"),
            ));
        }
        let master_addr = get("MASTER_ADDR")?;
        if master_addr.is_empty() {
            return Err(Error::config("distributed/env", "MASTER_ADDR must not be empty"));
        }
        let port = get("MASTER_PORT")?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(Error::config(
                    "distributed/env",
                    format!("MASTER_PORT must be in 1..=65535, got {port:?}"),
                ))
            }
        };
        let agent_store = lookup("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        Ok(LaunchEnv { rank, world_size, local_rank, master_addr, master_port, agent_store })
    }

    /// The group's store: a client of torchrun's agent store, or (without one) a server on
    /// rank 0 and clients elsewhere, as `torch.distributed`'s `env://` does.
    pub fn store(&self, timeout: Duration) -> Result<Store> {
        if self.rank == 0 && !self.agent_store {
            Store::server(&self.master_addr, self.master_port, self.world_size, timeout)
        } else {
            Store::client(&self.master_addr, self.master_port, timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<LaunchEnv> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LaunchEnv::from_lookup(|name| map.get(name).cloned())
    }

    const FULL: [(&str, &str); 6] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
    ];

    #[test]
    fn torchrun_variables_are_read() {
        let e = env(&FULL).unwrap();
        assert_eq!(
            e,
            LaunchEnv {
                rank: 1,
                world_size: 2,
                local_rank: 1,
                master_addr: "127.0.0.1".into(),
                master_port: 29500,
                agent_store: true
            }
        );
    }

    #[test]
    fn each_bad_variable_is_named() {
        let with = |name: &str, value: Option<&str>| {
            let mut pairs: Vec<(&str, &str)> = FULL.iter().copied().filter(|(k, _)| *k != name).collect();
            if let Some(v) = value {
                pairs.push((name, v));
            }
            env(&pairs).unwrap_err().to_string()
        };
        assert!(with("RANK", None).contains("RANK is not set"), "{}", with("RANK", None));
        assert!(with("WORLD_SIZE", Some("two")).contains("WORLD_SIZE must be a non-negative integer"));
        assert!(with("RANK", Some("2")).contains("RANK must be in 0..WORLD_SIZE, got RANK=2 WORLD_SIZE=2"));
        assert!(with("WORLD_SIZE", Some("0")).contains("RANK must be in 0..WORLD_SIZE"));
        assert!(with("MASTER_PORT", Some("0")).contains("MASTER_PORT must be in 1..=65535, got \"0\""));
        assert!(with("MASTER_PORT", Some("70000")).contains("MASTER_PORT must be in 1..=65535"));
        assert!(with("MASTER_ADDR", None).contains("MASTER_ADDR is not set"));
        assert!(with("LOCAL_RANK", Some("-1")).contains("LOCAL_RANK must be"));
        assert!(!env(&FULL[..5]).unwrap().agent_store);
        assert_eq!(env(&[FULL[0], FULL[1], FULL[3], FULL[4]]).unwrap().local_rank, 0);
    }
}
