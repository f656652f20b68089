//! The run simulation: whole runs of the real run driver and executor against a simulated
//! fleet ([`model::SimFleet`], behind the executor's [`crate::executor::Fleet`]), with a
//! fault injected at a chosen remote operation of each invocation, and the invariants
//! checked after every invocation. Time is tokio's paused clock: a 2-minute health gate
//! costs nothing. The journal, the backups and SHA256SUMS are real files in a private
//! directory (on /dev/shm when there is one: the journal fsyncs every record).
//!
//! A scenario (one seed): an upgrade, then up to three of resume / rollback /
//! rollback --restore-data, each with a fault or none; then, with no fault, resumes until
//! the run is done, or a rollback, and the fleet must have converged.
//!
//! `cargo test` runs [`DEFAULT_SEEDS`] seeds; `ROLLGATE_SIM_SEEDS=N` runs N (a soak), and
//! `ROLLGATE_SIM_SEED=S` replays one. A failing seed prints the command that replays it.

mod model;
mod scenario;

pub use scenario::{play, run_seed, Kind, Outcome};

/// Seeds `cargo test` runs.
pub const DEFAULT_SEEDS: u64 = 20_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(plan: &[Kind], roll_back: bool) -> Outcome {
        crate::live::silence(true);
        let plan: Vec<_> = plan.iter().map(|k| (*k, None)).collect();
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(play(3, &plan, roll_back, false))
    }

    /// Without faults the driver, the executor and the model agree: an upgrade converges
    /// on the new binary; a rollback with its data puts every host back on the previous
    /// binary and its backed-up data root; a second rollback finds nothing to do. (The
    /// invariants are checked after each invocation: I1 backups intact, I2 units active,
    /// I3 no stop without quorum, I4 journal and hosts agree, I5 convergence.)
    #[test]
    fn clean_runs_converge_and_keep_the_invariants() {
        let out = clean(&[Kind::Upgrade], false);
        assert!(out.violations.is_empty(), "{:#?}", out.violations);
        assert_eq!(out.invocations, 1);
        let out = clean(&[Kind::Upgrade, Kind::Rollback { restore: true }], false);
        assert!(out.violations.is_empty(), "{:#?}", out.violations);
        assert_eq!(out.invocations, 2);
        let out = clean(&[Kind::Upgrade, Kind::Resume], true);
        assert!(out.violations.is_empty(), "{:#?}", out.violations);
    }

    /// The seeds that found defects, kept as regression cases (2026-12-02): 41 a rollback
    /// after a run killed past a stop never brought that host back; 44 and 77
    /// compensation stopped a member with another one down; 63 an interrupted rollback
    /// exited with its host stopped; 61 and 302 a resumed upgrade finished, or waited at a
    /// gate, around a host a cut-short rollback left stopped; 126 a hang outside any step
    /// (the model now ends it at the command deadline, as SSH does); 862 an interrupt before
    /// any step of a resume left a host an earlier invocation stopped down; 759 a rollback
    /// went on after a stop its own compensation had undone (the restore refused the
    /// running unit, for ever); 530 a crash after the last invocation (the model's; the
    /// operator now starts it); 135, 250, 79, 312.
    #[test]
    fn regression_seeds_keep_the_invariants() {
        for seed in [41, 44, 61, 63, 77, 79, 126, 135, 250, 302, 312, 530, 759, 862] {
            let out = run_seed(seed, false);
            assert!(out.violations.is_empty(), "seed {seed}: {:#?}", out.violations);
        }
    }

    /// Invariants I1-I5 over thousands of whole runs with faults (issue 23). Not yet part of
    /// `cargo test`: on 2026-12-02 the first cut broke an invariant in about 9 % of seeds;
    /// the defects they found are fixed (see the regression seeds) and seeds 0-1500 pass,
    /// but its speed in one process (the `cargo test` budget: 20,000 runs in 60 s) is not
    /// measured yet. Run it with
    /// `ROLLGATE_SIM_SEEDS=N cargo test -p rollgate --release simulated_runs -- --ignored --nocapture`.
    #[test]
    #[ignore = "issue 23: the soak's speed within the cargo test budget is not measured yet"]
    fn simulated_runs_keep_the_invariants() {
        if let Some(seed) = std::env::var("ROLLGATE_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
            let out = run_seed(seed, true);
            assert!(out.violations.is_empty(), "seed {seed}: {:#?}", out.violations);
            return;
        }
        let n: u64 = std::env::var("ROLLGATE_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_SEEDS);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) as u64;
        let started = std::time::Instant::now();
        let results: Vec<(u64, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (0..n)
                            .filter(|i| i % threads == t)
                            .map(|seed| (seed, run_seed(seed, false)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a simulation thread"))
                .collect()
        });
        let took = started.elapsed().as_secs_f64();
        let invocations: usize = results.iter().map(|(_, o)| o.invocations).sum();
        let faults: usize = results.iter().map(|(_, o)| o.faults).sum();
        eprintln!(
            "simulated runs: {} ({invocations} invocations, {faults} faults) in {took:.1} s, {:.0} runs/s",
            results.len(),
            results.len() as f64 / took
        );
        let failed: Vec<&(u64, Outcome)> = results.iter().filter(|(_, o)| !o.violations.is_empty()).collect();
        if let Some((seed, o)) = failed.first() {
            panic!(
                "{} of {n} seeds broke an invariant; the first, seed {seed}:\n{}\nreplay: ROLLGATE_SIM_SEED={seed} cargo test -p rollgate --release simulated_runs -- --ignored --nocapture",
                failed.len(),
                o.violations.join("\n")
            );
        }
    }
}
