//! rollgate-core: the model and the decisions of rollgate.
//!
//! It owns the inventory (parse, then validate), the presets and their parsers, the view
//! of a cluster and the gates decided from it, the plan, the journal, and the one quoting
//! function for remote commands. It has no network code and no async runtime: the
//! transport is `rollgate-ssh`, the executor is the `rollgate` binary.

pub mod cluster;
pub mod config;
pub mod decide;
pub mod discover;
pub mod facts;
pub mod fleet;
pub mod gate;
pub mod inventory;
pub mod journal;
pub mod lease;
pub mod plan;
pub mod preset;
pub mod quote;
pub mod script;
pub mod table;
pub mod timeline;
pub mod version;

pub use cluster::{ClusterView, Member, RaftState};
pub use inventory::{Host, Inventory, InventoryError, PresetRef};
pub use plan::{Plan, Step};
pub use preset::{Preset, ProbeError, ProbeOutput};
