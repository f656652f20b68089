//! Integration tests against the lab (`lab/lab up`): real OpenSSH servers, real systemd,
//! a real etcd cluster. Without a lab they skip with a message, except under CI=true.

mod commands;
mod consul;
mod discover;
mod faults;
mod fleet;
mod lab;
mod nats;
mod network;
mod operator;
mod presets;
mod reconfigure;
mod release;
mod replace;
mod restart;
mod rollout;
mod ssh;
mod upgrade;
mod util;
