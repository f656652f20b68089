//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Rolling upgrades of Raft clusters (etcd, ...) over plain SSH: leader last, quorum kept,
/// every byte verified, every data root backed up, resumable, reversible.
#[derive(Debug, Parser)]
#[command(name = "rollgate", version, about)]
pub struct Args {
    /// The inventory (TOML) describing the cluster.
    #[arg(short = 'i', long, env = "ROLLGATE_INVENTORY", global = true)]
    pub inventory: Option<PathBuf>,
    /// Where runs, journals, backups and the lock live [default: .rollgate beside the inventory].
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// How many hosts to connect to (and run commands on) at once.
    #[arg(long, default_value_t = 64, global = true)]
    pub parallel: usize,
    /// Learn the keys of hosts not in known_hosts (a changed key is always refused).
    #[arg(long, global = true)]
    pub accept_new: bool,
    /// The OpenSSH client config to read for what the inventory leaves unset [default:
    /// the inventory's ssh_config, else ~/.ssh/config].
    #[arg(long, global = true, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Print errors only (no progress, no warnings).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail: -v info logs (and `check` shows where each connection setting came
    /// from), -vv debug logs. ROLLGATE_LOG (an env-filter like `rollgate=debug`) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do when a host fails during an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Put the previous binary back on the failed host, start it, check its health.
    Rollback,
    /// Leave the failed host as it is, for a person.
    Halt,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Is it safe to start an upgrade? Per host and for the cluster; exits 0 only if so.
    Check {
        /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated
        /// list of them. The cluster-wide gates still read every member.
        #[arg(long)]
        hosts: Option<String>,
        /// Print one JSON object (`format`, `safe`, `hosts`, `problems`) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// A table of the hosts: Raft state, version, unit state, raft index and lag.
    Status {
        /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated
        /// list of them. The cluster-wide gates still read every member.
        #[arg(long)]
        hosts: Option<String>,
        /// Print a JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command on the hosts at once (joined with spaces and run by the remote shell,
    /// as ssh does).
    Exec {
        /// A glob over host names, `role:ROLE`, or a comma-separated list of them.
        #[arg(long)]
        hosts: Option<String>,
        /// Print one JSON object per host (`format`, `host`, `exit`, `stdout`, `stderr`,
        /// `error`) instead of prefixed lines.
        #[arg(long)]
        json: bool,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Show the order, steps and backups of an upgrade; touches nothing.
    Plan {
        #[command(flatten)]
        binary: BinaryArgs,
        /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated
        /// list of them. The cluster-wide gates still read every member.
        #[arg(long)]
        hosts: Option<String>,

        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The plan of a `reconfigure` run: each host's `[[cluster.config]]` files and
        /// their difference from the files the host has (no binary is involved).
        #[arg(long)]
        config: bool,
    },
    /// Upgrade the cluster's binary, one host at a time, leader last.
    Upgrade {
        #[command(flatten)]
        binary: BinaryArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated
        /// list of them. The cluster-wide gates still read every member.
        #[arg(long)]
        hosts: Option<String>,

        /// Refuse unless the staged binary reports this version.
        #[arg(long)]
        expect_version: Option<semver::Version>,
        /// What to do with a host that fails.
        #[arg(long, value_enum, default_value_t = OnFailure::Rollback)]
        on_failure: OnFailure,
        /// Start even if the cluster is degraded (recorded in the journal).
        #[arg(long)]
        force: bool,
        /// Allow an upgrade path the version policy forbids (recorded in the journal).
        #[arg(long)]
        allow_version_skip: bool,
        /// Failed hosts (each rolled back) a batched role tolerates before the rollout
        /// stops: a count or a percent of the role's hosts [default: the role's
        /// max_failures, else 0]. A failed canary or Raft member always stops it.
        #[arg(long, value_name = "N|P%")]
        max_failures: Option<rollgate_core::inventory::Amount>,
    },
    /// Restart the cluster's units one host at a time with an upgrade's gates and order
    /// (followers first, the leader last), no binary change; journaled and resumable.
    Restart {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        rolling: RollingArgs,
    },
    /// Change the `[[cluster.config]]` files (rendered per host) one host at a time with an
    /// upgrade's gates, order, backup and journal; each validated on its host before
    /// anything stops; the binary left as it is. `rollback` puts the previous files back.
    Reconfigure {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        rolling: RollingArgs,
    },
    /// Replace members by the `[[spares]]` that name them, one pair at a time, the leader's
    /// last: each new host joins as a non-voter, is promoted once caught up, then the old
    /// one leaves, is stopped, archived and disabled. Running it again resumes.
    Replace {
        /// Print the pairs, their steps and the voters after each membership change;
        /// touch nothing.
        #[arg(long)]
        plan: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Continue an interrupted run (an upgrade, a restart or a configuration change) from its
    /// journal.
    Resume {
        /// The run id [default: the newest unfinished run].
        run_id: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Put the previous binary back on the hosts a run changed, in reverse order.
    Rollback {
        /// The run id [default: the newest run].
        run_id: Option<String>,
        /// Also restore each host's data root from that run's backup.
        #[arg(long)]
        restore_data: bool,
        /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated
        /// list of them. The cluster-wide gates still read every member.
        #[arg(long)]
        hosts: Option<String>,

        #[command(flatten)]
        run: RunArgs,
    },
    /// List runs and their state.
    Runs {
        /// Print a JSON array instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Work with a preset's probes.
    Probe {
        #[command(subcommand)]
        action: ProbeAction,
    },
    /// Archive data roots outside an upgrade: unit stopped, one host at a time.
    Backup {
        /// A glob over host names, `role:ROLE`, or a comma-separated list of them.
        #[arg(long)]
        hosts: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Print every journal event as a JSON line on stdout (and nothing else there).
        #[arg(long)]
        json: bool,
    },
    /// List the data root archives in the state directory: size, date, and whether each
    /// still has the sha256 recorded when it was made (exit 1 if one does not).
    Backups {
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Draw a run's timeline from its journal: one row per host, its steps as bars on a
    /// time axis, downtime shaded, failures red, versions before and after.
    Report {
        /// The run id [default: the newest run].
        run_id: Option<String>,
        /// Write a self-contained HTML page here [default without --svg:
        /// STATE/runs/RUN/report.html].
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the SVG picture here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Write an inventory from one reachable member: the members as the cluster lists them,
    /// each host's binary and data root as its running unit says, each value with a
    /// comment naming where it was found. Touches nothing on the hosts.
    Discover {
        /// The cluster's preset (etcd, consul, nats).
        #[arg(long)]
        preset: String,
        /// One member: `[USER@]ADDRESS[:PORT]`.
        #[arg(long, value_name = "[USER@]ADDRESS[:PORT]")]
        host: String,
        /// The unit [default: the preset's].
        #[arg(long)]
        unit: Option<String>,
        /// The private key to log in with (written into the inventory).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// The known_hosts file to check host keys against (written into the inventory).
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
        /// `[cluster] name` [default: the output file's name without .toml].
        #[arg(long)]
        name: Option<String>,
        /// The inventory to write; an existing file is never overwritten.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Many clusters in waves: a canary wave, then at most max_parallel clusters at once,
    /// a soak and a health check after each wave, a failure budget over the whole fleet.
    /// Each cluster is upgraded by a `rollgate upgrade` of its own (its journal, lock,
    /// leases, backups and report in the fleet's state directory).
    Fleet {
        /// The fleet file (TOML), or a directory whose `*.toml` files are the clusters'
        /// inventories.
        #[arg(long, short = 'f', value_name = "FILE|DIR")]
        file: PathBuf,
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout: `rollgate man | man -l -`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// Show the waves and each cluster's inventory, labels and upgrade arguments; touches
    /// nothing.
    Plan {
        #[command(flatten)]
        waves: WaveArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the fleet's clusters wave by wave (this jump host's shard with --shard).
    Upgrade {
        #[command(flatten)]
        waves: WaveArgs,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long)]
        yes: bool,
        /// More arguments for every cluster's `rollgate upgrade` (after `--`).
        #[arg(last = true)]
        upgrade: Vec<String>,
    },
    /// Continue an interrupted fleet run: its unfinished clusters (each resumes its own
    /// run) and the waves not begun.
    Resume {
        /// The fleet run [default: the newest unfinished one].
        fleet_run: Option<String>,
    },
    /// One row per cluster: its state in the newest fleet run and its newest run's state.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One row per cluster of the newest fleet run (or FLEET_RUN), merged across the state
    /// directories given with --from (the shards').
    Report {
        /// The fleet run [default: the newest in each state directory].
        fleet_run: Option<String>,
        /// More state directories (other jump hosts' shards) to merge.
        #[arg(long, value_name = "DIR")]
        from: Vec<PathBuf>,
        /// Also write a self-contained HTML page: a bar per cluster on one time axis,
        /// linked to each cluster's own report.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How a fleet's waves go (each overrides the fleet file's `[fleet]` setting).
#[derive(Debug, clap::Args)]
pub struct WaveArgs {
    /// Only this jump host's clusters: shard I of N, by rendezvous hashing of the
    /// clusters' names.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<rollgate_core::fleet::Shard>,
    /// The canary wave: a count of the first clusters, or names (comma-separated).
    #[arg(long, value_name = "N|NAMES")]
    pub canary: Option<rollgate_core::fleet::Canary>,
    /// Clusters at once in each wave after the canary.
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Wait after each wave before its health check.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Failed clusters the fleet tolerates before it stops: a count or a percent.
    #[arg(long, value_name = "N|P%")]
    pub failure_budget: Option<rollgate_core::inventory::Amount>,
}

#[derive(Debug, Subcommand)]
pub enum ProbeAction {
    /// Parse a captured probe output and print, as JSON, what rollgate understood
    /// (members, leader, voters, states, indexes). A built-in preset needs no inventory;
    /// `custom` reads its probes from the inventory (`-i`).
    Parse {
        /// The preset (`custom` reads its probes from the inventory, `-i`).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(rollgate_core::preset::names()))]
        preset: String,
        /// The probe.
        #[arg(long, value_parser = ["status", "health", "catchup", "version"])]
        probe: String,
        /// The command's standard output, captured to a file. For presets that ask every
        /// host over HTTP (`http`, `nats`), `--probe status` reads a folder instead: one
        /// folder per host, one `curl -si` answer per request in it (`nodeN/varz.http`).
        file: PathBuf,
        /// The command's standard error, captured to a file (etcd names unreachable members there).
        #[arg(long)]
        stderr: Option<PathBuf>,
        /// For `--probe health`: the status probe's output, whose members health is read against.
        #[arg(long)]
        with_status: Option<PathBuf>,
    },
}

/// The selection and failure settings of a run without a binary (`restart`,
/// `reconfigure`).
#[derive(Debug, clap::Args)]
pub struct RollingArgs {
    /// Only these hosts: a glob over host names, `role:ROLE`, or a comma-separated list of
    /// them. The cluster-wide gates still read every member.
    #[arg(long)]
    pub hosts: Option<String>,
    /// Start even if the cluster is degraded (recorded in the journal).
    #[arg(long)]
    pub force: bool,
    /// Failed hosts (each brought back) a batched role tolerates before the rollout stops:
    /// a count or a percent of the role's hosts [default: the role's max_failures, else
    /// 0]. A failed canary or Raft member always stops it.
    #[arg(long, value_name = "N|P%")]
    pub max_failures: Option<rollgate_core::inventory::Amount>,
}

/// What to install: a local binary, or a release fetched and checked.
#[derive(Debug, Default, clap::Args)]
pub struct BinaryArgs {
    /// The new binary (a local file).
    #[arg(long, conflicts_with = "release")]
    pub binary: Option<PathBuf>,
    /// Its expected sha256 (64 hex digits, `sha256:` prefix accepted); a file that does not
    /// match is refused before anything else.
    #[arg(long)]
    pub sha256: Option<String>,
    /// A release to install: a `.tar.gz`, `.tgz` or `.zip` holding the binary (and the
    /// `[[cluster.files]]`), or the binary itself; URL or local file [default: the
    /// inventory's release.url].
    #[arg(long, value_name = "URL|FILE")]
    pub release: Option<String>,
    /// The SHA256SUMS file that lists the release [default: release.sums].
    #[arg(long, value_name = "URL|FILE", conflicts_with = "binary")]
    pub sums: Option<String>,
    /// A detached OpenPGP signature of the sums file [default: release.signature].
    #[arg(long, value_name = "URL|FILE", conflicts_with = "binary")]
    pub signature: Option<String>,
    /// An OpenPGP public key the signature must verify against (repeatable) [default:
    /// release.trusted_keys].
    #[arg(long = "trusted-key", value_name = "FILE", conflicts_with = "binary")]
    pub trusted_keys: Vec<PathBuf>,
    /// The version to install: fills `{version}` in the inventory's [release] templates.
    #[arg(long, value_name = "VERSION", conflicts_with = "binary")]
    pub to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long)]
    pub yes: bool,
    /// How long the health gate waits for a started host.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub health_timeout: Option<Duration>,
    /// Print every journal event as a JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}
