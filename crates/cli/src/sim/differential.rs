//! Differential tests: the simulated fleet's file operations against the scripts
//! [`crate::executor::SshFleet`] runs (issue 23). From every state of a binary, its kept
//! previous copy and its staged copy (each absent, the old or the new file), and of a data
//! root (its content, a copy an earlier restore kept aside), the real script runs with
//! `sh` on real files in a temporary directory, the model's operation on one simulated
//! host; both must agree on what the operation answered (acted, already done, failed) and
//! on what the files are after it. The simulation's findings count only as far as these
//! agree.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rollgate_core::script::{self, prev_path, staged_path};
use rollgate_core::{Host, Inventory};
use sha2::Digest as _;

use super::model::{data_tar, Model, SimFleet, SimHost};
use crate::executor::{acted, Fleet};

const OLD: &[u8] = b"etcd 3.4.23 (old)\n";
const NEW: &[u8] = b"etcd 3.5.16 (new)\n";

/// Which file a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Old,
    New,
    /// Neither (the test put no such content anywhere).
    Other,
}

/// A binary, its kept previous copy and its staged copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Files {
    binary: Option<File>,
    prev: Option<File>,
    staged: Option<File>,
}

/// What an operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Acted,
    Already,
    Failed,
}

fn sha(f: File) -> String {
    let body = match f {
        File::Old => OLD,
        File::New => NEW,
        File::Other => b"other".as_slice(),
    };
    hex::encode(sha2::Sha256::digest(body))
}

fn of_sha(s: &str) -> File {
    [File::Old, File::New]
        .into_iter()
        .find(|f| sha(*f) == s)
        .unwrap_or(File::Other)
}

/// Every state with a binary in place: 2 x 3 x 3.
fn states() -> Vec<Files> {
    let some = [File::Old, File::New];
    let maybe = [None, Some(File::Old), Some(File::New)];
    let mut out = Vec::new();
    for binary in some {
        for prev in maybe {
            for staged in maybe {
                out.push(Files {
                    binary: Some(binary),
                    prev,
                    staged,
                });
            }
        }
    }
    out
}

/// The operations compared.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Swap to the new binary.
    Swap,
    /// Put the old binary back.
    RestoreBinary,
    /// Remove the staged copy.
    Unstage,
}

/// `op` by its real script on real files in `dir`, from `from`.
fn real(dir: &Path, from: Files, op: Op) -> (Answer, Files) {
    let binary = dir.join("etcd").display().to_string();
    let paths = [binary.clone(), prev_path(&binary), staged_path(&binary)];
    for (path, f) in paths.iter().zip([from.binary, from.prev, from.staged]) {
        let _ = std::fs::remove_file(path);
        if let Some(f) = f {
            let body = if f == File::Old { OLD } else { NEW };
            std::fs::write(path, body).expect("a file of the state");
        }
    }
    let text = match op {
        Op::Swap => script::swap(&binary, &sha(File::New), &[]),
        Op::RestoreBinary => script::restore_binary(&binary, &sha(File::Old), &[]),
        Op::Unstage => script::unstage(std::slice::from_ref(&binary)),
    };
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&text)
        .output()
        .expect("sh runs");
    let answer = match (out.status.success(), matches!(op, Op::Unstage)) {
        (false, _) => Answer::Failed,
        (true, true) => Answer::Acted,
        (true, false) if acted(&String::from_utf8_lossy(&out.stdout)) => Answer::Acted,
        (true, false) => Answer::Already,
    };
    let read = |p: &String| {
        std::fs::read(p).ok().map(|b| match b.as_slice() {
            b if b == OLD => File::Old,
            b if b == NEW => File::New,
            _ => File::Other,
        })
    };
    let after = Files {
        binary: read(&paths[0]),
        prev: read(&paths[1]),
        staged: read(&paths[2]),
    };
    (answer, after)
}

/// `op` by the simulated fleet, on one host in state `from`.
fn model(host: &Host, from: Files, op: Op) -> (Answer, Files) {
    let sim = SimHost {
        address: host.address.clone(),
        member: true,
        active: false,
        binary: sha(from.binary.expect("a binary")),
        running: String::new(),
        prev: from.prev.map(sha),
        staged: from.staged.map(sha),
        data: 1,
        aside: Vec::new(),
        index: 1,
    };
    let fleet = fleet_of(host, sim);
    let new = sha(File::New);
    let old = sha(File::Old);
    let answer = answer_of(async {
        match op {
            Op::Swap => fleet.swap(host, &host.binary, &new, &[], "").await,
            Op::RestoreBinary => fleet.restore_binary(host, &host.binary, &old, "").await,
            Op::Unstage => fleet.unstage(host, &[]).await.map(|()| true),
        }
    });
    let m = fleet.model.lock().expect("the model");
    let h = &m.hosts[&host.name];
    let after = Files {
        binary: Some(of_sha(&h.binary)),
        prev: h.prev.as_deref().map(of_sha),
        staged: h.staged.as_deref().map(of_sha),
    };
    (answer, after)
}

/// One simulated host in `sim`'s state, alone in a model, behind a fleet.
fn fleet_of(host: &Host, sim: SimHost) -> SimFleet {
    let m = Model::new(
        [(host.name.clone(), sim)].into(),
        vec![host.name.clone()],
        None,
        Default::default(),
    );
    SimFleet {
        model: Arc::new(Mutex::new(m)),
    }
}

/// Runs a model operation to its answer.
fn answer_of(op: impl std::future::Future<Output = anyhow::Result<bool>>) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    match rt.block_on(op) {
        Ok(true) => Answer::Acted,
        Ok(false) => Answer::Already,
        Err(_) => Answer::Failed,
    }
}

/// A stopped data root: its content (a generation) and how many copies earlier restores
/// of the run kept aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataRoot {
    generation: u64,
    aside: usize,
}

const RUN: &str = "20261202T000000Z";

/// `script::restore_data` from `from`, the backup holding `generation` 1, in `dir`.
fn real_restore(dir: &Path, from: DataRoot) -> (Answer, DataRoot) {
    let root = dir.join(format!("case-{}-{}", from.generation, from.aside));
    let data = root.join("data");
    std::fs::create_dir_all(data.join("member")).expect("the data root");
    let tar = data_tar(1).expect("a backup");
    if from.generation == 1 {
        // The data root the backup was taken from: its files as the archive has them
        // (extracted as the restore extracts, so that `tar --diff` finds them alike).
        let archive = root.join("backed-up.tar");
        std::fs::write(&archive, &tar).expect("the archive");
        let x = std::process::Command::new("tar")
            .arg("-xpf")
            .arg(&archive)
            .arg("-C")
            .arg(&data)
            .status()
            .expect("tar runs");
        assert!(x.success(), "tar -x");
    } else {
        std::fs::write(data.join("member/generation"), from.generation.to_string()).expect("its content");
    }
    let data_root = data.display().to_string();
    let pre = script::pre_restore_path(&data_root, RUN);
    for k in 0..from.aside {
        let p = if k == 0 {
            pre.clone()
        } else {
            format!("{pre}.{}", k + 1)
        };
        std::fs::create_dir_all(Path::new(&p).join("member")).expect("an earlier copy");
        std::fs::write(Path::new(&p).join("member/generation"), b"5").expect("its content");
    }
    let upload = root.join("upload");
    std::fs::create_dir_all(&upload).expect("the upload directory");
    std::fs::write(upload.join("archive"), &tar).expect("the archive");
    let text = script::restore_data(&data_root, &upload.display().to_string(), RUN, 1, 1);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&text)
        .output()
        .expect("sh runs");
    let answer = match out.status.success() {
        false => Answer::Failed,
        true if acted(&String::from_utf8_lossy(&out.stdout)) => Answer::Acted,
        true => Answer::Already,
    };
    let generation = std::fs::read_to_string(data.join("member/generation"))
        .ok()
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or(0);
    let aside = std::fs::read_dir(&root)
        .expect("the case directory")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("data.rollgate-pre-restore-")
        })
        .count();
    (answer, DataRoot { generation, aside })
}

/// The model's restore of `from`, the backup holding generation 1 (written in `dir`).
fn model_restore(host: &Host, dir: &Path, from: DataRoot) -> (Answer, DataRoot) {
    let archive = dir.join("model-archive.tar");
    std::fs::write(&archive, data_tar(1).expect("a backup")).expect("the archive");
    let sim = SimHost {
        address: host.address.clone(),
        member: true,
        active: false,
        binary: sha(File::Old),
        running: String::new(),
        prev: None,
        staged: None,
        data: from.generation,
        aside: vec![5; from.aside],
        index: 1,
    };
    let fleet = fleet_of(host, sim);
    let limit = std::time::Duration::from_secs(60);
    let answer = answer_of(fleet.restore_data(host, &host.data_root, &archive, "", RUN, (1, 1), limit));
    let m = fleet.model.lock().expect("the model");
    let h = &m.hosts[&host.name];
    (
        answer,
        DataRoot {
            generation: h.data,
            aside: h.aside.len(),
        },
    )
}

/// A data root as the backup has it, or as the new version rewrote it, with no copy
/// aside or one: the model restores (or finds it done) as the script does.
#[test]
fn the_models_data_restore_does_what_the_script_does() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let host = host();
    let mut differ = Vec::new();
    for generation in [1, 11] {
        for aside in [0, 1, 2] {
            let from = DataRoot { generation, aside };
            let r = real_restore(dir.path(), from);
            let m = model_restore(&host, dir.path(), from);
            if r != m {
                differ.push(format!("restore from {from:?}:\n  script {r:?}\n  model  {m:?}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 6 differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

fn host() -> Host {
    let text = "[ssh]\nuser = \"root\"\n\n[cluster]\nname = \"diff\"\npreset = \"etcd\"\nbinary = \"/usr/bin/etcd\"\ndata_root = \"/var/lib/etcd\"\n\n[[hosts]]\nname = \"n1\"\naddress = \"10.0.0.1\"\n";
    let inv = Inventory::parse(Path::new("diff.toml"), text).expect("a valid inventory");
    inv.hosts[0].clone()
}

/// Every state, every operation: the model answers and ends as the script does.
#[test]
fn the_models_file_operations_do_what_the_scripts_do() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let host = host();
    let mut differ = Vec::new();
    for op in [Op::Swap, Op::RestoreBinary, Op::Unstage] {
        for from in states() {
            let r = real(dir.path(), from, op);
            let m = model(&host, from, op);
            if r != m {
                differ.push(format!("{op:?} from {from:?}:\n  script {r:?}\n  model  {m:?}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 54 differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
