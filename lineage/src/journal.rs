//! The run journal: the runs of this process that are open, kept in a small file
//! (`OPENLINEAGE_RUN_JOURNAL`) so that the next process of the same service can close them when
//! this one dies without doing so (SIGKILL, out of memory, a panic that aborts, a power cut).
//!
//! A clean stop ends every run (COMPLETE, FAIL or ABORT), so a journal that still lists open runs
//! when a process starts means the previous process crashed. The new process then
//! - closes each such run with a FAIL whose `errorMessage` starts with [`CRASH_MESSAGE`]
//!   (children before their parents), so no run is left RUNNING forever in Marquez or the
//!   API's lineage store;
//! - counts the crash in the journal, which survives restarts, so
//!   `tributary_process_crashes_total` only grows and a crash loop shows as a rate.
//!
//! One journal belongs to one process at a time: it is locked (`<journal>.lock`, an advisory
//! lock the kernel drops when the process dies, however it dies) and a second process finding
//! it locked runs without one rather than closing runs that are still alive.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::LineageError;
use crate::event::{EventType, Job, Run, RunEvent};
use crate::facets::{
    ErrorMessageRunFacet, Facet, JobFacets, ParentJob, ParentRun, ParentRunFacet, RunFacets,
};

/// How the `errorMessage` of a run closed for a crashed process begins.
pub const CRASH_MESSAGE: &str = "the process running this run ended without closing it";

/// A run started and not yet ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRun {
    /// Its job's namespace.
    pub namespace: String,
    /// Its job's name.
    pub job: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The run it is part of, if any: (run id, job namespace, job name).
    pub parent: Option<(Uuid, String, String)>,
}

/// What the journal file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    /// Runs started and not yet ended, by run id.
    pub open: BTreeMap<Uuid, OpenRun>,
    /// Processes found to have crashed since the journal was created.
    pub crashes: u64,
    /// When the last crash was found (the start of the process that found it).
    pub last_crash_at: Option<DateTime<Utc>>,
}

impl JournalState {
    /// Follows `event`: a START opens its run, an end closes it. Returns whether anything
    /// changed (a RUNNING or an end of a run never opened changes nothing).
    pub fn follow(&mut self, event: &RunEvent) -> bool {
        match event.event_type {
            EventType::Start => {
                let parent = event.run.facets.parent.as_ref().map(|p| {
                    (
                        p.body.run.run_id,
                        p.body.job.namespace.clone(),
                        p.body.job.name.clone(),
                    )
                });
                let run = OpenRun {
                    namespace: event.job.namespace.clone(),
                    job: event.job.name.clone(),
                    started_at: event.event_time,
                    parent,
                };
                self.open.insert(event.run.run_id, run.clone()) != Some(run)
            }
            EventType::Running => false,
            EventType::Complete | EventType::Abort | EventType::Fail => {
                self.open.remove(&event.run.run_id).is_some()
            }
        }
    }

    /// At a process's start: the runs an earlier process left open, children before parents,
    /// and the journal emptied of them with the crash counted (at `now`), if there were any.
    pub fn take_left_open(&mut self, now: DateTime<Utc>) -> Vec<(Uuid, OpenRun)> {
        let open = std::mem::take(&mut self.open);
        if open.is_empty() {
            return Vec::new();
        }
        self.crashes += 1;
        self.last_crash_at = Some(now);
        let depth = |id: &Uuid| {
            let mut depth = 0;
            let mut at = open.get(id);
            while let Some(run) = at {
                match &run.parent {
                    Some((parent, ..)) if depth < open.len() => {
                        depth += 1;
                        at = open.get(parent);
                    }
                    _ => break,
                }
            }
            depth
        };
        let mut depths: Vec<(usize, Uuid)> = open.keys().map(|id| (depth(id), *id)).collect();
        // Deepest first: a child closes before the run it is part of.
        depths.sort_by_key(|(depth, id)| (std::cmp::Reverse(*depth), *id));
        let mut open = open;
        depths
            .into_iter()
            .filter_map(|(_, id)| open.remove(&id).map(|run| (id, run)))
            .collect()
    }
}

/// The FAIL event that closes `run`, left open by a process that crashed, at `now`.
pub fn crash_event(run_id: Uuid, run: &OpenRun, now: DateTime<Utc>) -> RunEvent {
    let message = format!(
        "{CRASH_MESSAGE} (killed or crashed); closed when the service started again at {}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let facets = RunFacets {
        parent: run.parent.as_ref().map(|(id, namespace, name)| {
            Facet::new(ParentRunFacet {
                run: ParentRun { run_id: *id },
                job: ParentJob {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
            })
        }),
        processing_engine: None,
        error_message: Some(Facet::new(ErrorMessageRunFacet::from_message(message))),
    };
    let mut event = RunEvent::new(
        EventType::Fail,
        Run { run_id, facets },
        Job {
            namespace: run.namespace.clone(),
            name: run.job.clone(),
            facets: JobFacets::default(),
        },
    );
    event.event_time = now;
    event
}

/// A journal file, locked by this process.
#[derive(Debug)]
pub struct RunJournal {
    path: PathBuf,
    state: Mutex<JournalState>,
    /// Held for the process's life: the lock is the file's.
    _lock: File,
}

impl RunJournal {
    /// Opens (or creates) the journal at `path` and locks it. Returns it and the runs an earlier
    /// process left open (already taken out of it and counted as a crash, see
    /// [`JournalState::take_left_open`]).
    pub fn open(path: &Path) -> Result<(Self, Vec<(Uuid, OpenRun)>), LineageError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            LineageError::Journal(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the folder of", &e))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path).map_err(|e| fail("cannot open the lock of", &e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => LineageError::Journal(format!(
                "{} is locked: another process of this service is running with it",
                path.display()
            )),
            std::fs::TryLockError::Error(e) => fail("cannot lock", &e),
        })?;
        let mut state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail("cannot read", &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JournalState::default(),
            Err(e) => return Err(fail("cannot read", &e)),
        };
        let left_open = state.take_left_open(Utc::now());
        let journal = Self {
            path: path.to_path_buf(),
            state: Mutex::new(state),
            _lock: lock,
        };
        journal.save(&journal.state.lock().expect("journal lock"))?;
        Ok((journal, left_open))
    }

    /// Follows `event` (see [`JournalState::follow`]) and saves the journal if it changed. A
    /// failure to save is logged: the journal must never stop a job.
    pub fn follow(&self, event: &RunEvent) {
        let mut state = self.state.lock().expect("journal lock");
        if state.follow(event)
            && let Err(error) = self.save(&state)
        {
            tracing::warn!(%error, "OpenLineage run journal not saved");
        }
    }

    /// Crashes counted so far and when the last one was found.
    pub fn crashes(&self) -> (u64, Option<DateTime<Utc>>) {
        let state = self.state.lock().expect("journal lock");
        (state.crashes, state.last_crash_at)
    }

    /// Writes the journal whole: to a temporary file, then renamed over it (a crash mid-write
    /// leaves the previous journal, never half of one).
    fn save(&self, state: &JournalState) -> Result<(), LineageError> {
        let fail = |e: std::io::Error| {
            LineageError::Journal(format!("cannot write {}: {e}", self.path.display()))
        };
        let json = serde_json::to_vec(state).expect("the journal serializes");
        let temporary = self.path.with_extension("tmp");
        std::fs::write(&temporary, json).map_err(fail)?;
        std::fs::rename(&temporary, &self.path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emitter::{JobSpec, Lineage, Processing};

    fn spec(name: &str) -> JobSpec {
        JobSpec {
            name: name.into(),
            processing: Processing::Batch,
            job_type: "TASK",
            source_path: "lineage/src/journal.rs",
            description: String::new(),
        }
    }

    #[test]
    fn runs_open_at_start_and_close_at_their_end() {
        let lineage = Lineage::disabled();
        let process = lineage.run(&spec("svc"));
        let task = process.child(&spec("svc.task"));
        let mut state = JournalState::default();
        let start = process.event(EventType::Start, vec![], vec![], None);
        assert!(state.follow(&start));
        assert!(
            !state.follow(&start),
            "the same START again changes nothing"
        );
        assert!(state.follow(&task.event(EventType::Start, vec![], vec![], None)));
        assert!(!state.follow(&task.event(EventType::Running, vec![], vec![], None)));
        assert_eq!(state.open.len(), 2);
        assert_eq!(
            state.open[&task.run_id()].parent,
            Some((process.run_id(), "tributary".into(), "svc".into()))
        );
        for end in [EventType::Complete, EventType::Fail, EventType::Abort] {
            let mut s = state.clone();
            assert!(s.follow(&task.event(end, vec![], vec![], None)), "{end:?}");
            assert_eq!(s.open.keys().collect::<Vec<_>>(), vec![&process.run_id()]);
        }
        // An end of a run never started (e.g. emitted before the journal) changes nothing.
        let other = lineage.run(&spec("other"));
        assert!(!state.follow(&other.event(EventType::Complete, vec![], vec![], None)));
    }

    #[test]
    fn left_open_runs_close_children_first_and_count_one_crash() {
        let lineage = Lineage::disabled();
        let process = lineage.run(&spec("svc"));
        let task = process.child(&spec("svc.task"));
        let sub = task.child(&spec("svc.task.sub"));
        let mut state = JournalState::default();
        let now = Utc::now();
        assert!(
            state.take_left_open(now).is_empty(),
            "nothing open: no crash"
        );
        assert_eq!(state.crashes, 0);
        // Started parent first, as a process does.
        for run in [&process, &task, &sub] {
            state.follow(&run.event(EventType::Start, vec![], vec![], None));
        }
        let closed = state.take_left_open(now);
        let order: Vec<Uuid> = closed.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, vec![sub.run_id(), task.run_id(), process.run_id()]);
        assert_eq!((state.crashes, state.last_crash_at), (1, Some(now)));
        assert!(state.open.is_empty());

        let event = crash_event(closed[1].0, &closed[1].1, now);
        assert_eq!(event.event_type, EventType::Fail);
        assert_eq!(event.run.run_id, task.run_id());
        assert_eq!(event.job.name, "svc.task");
        assert_eq!(
            event.run.facets.parent.as_ref().unwrap().body.run.run_id,
            process.run_id()
        );
        let message = &event
            .run
            .facets
            .error_message
            .as_ref()
            .unwrap()
            .body
            .message;
        assert!(message.starts_with(CRASH_MESSAGE), "{message}");
        let errors = crate::validate::SchemaSet::load()
            .unwrap()
            .errors(&serde_json::to_value(&event).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn a_journal_survives_the_process_and_is_locked_while_it_lives() {
        let dir = std::env::temp_dir().join(format!("tributary-journal-{}", Uuid::now_v7()));
        let path = dir.join("runs.json");
        let lineage = Lineage::disabled();
        let process = lineage.run(&spec("svc"));
        {
            let (journal, left) = RunJournal::open(&path).unwrap();
            assert!(left.is_empty());
            let err = RunJournal::open(&path).unwrap_err().to_string();
            assert!(err.contains("is locked"), "{err}");
            journal.follow(&process.event(EventType::Start, vec![], vec![], None));
            assert_eq!(journal.crashes(), (0, None));
            // Dropped without ending the run: as a SIGKILL leaves it (the lock goes with it).
        }
        let (journal, left) = RunJournal::open(&path).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, process.run_id());
        assert_eq!(journal.crashes().0, 1);
        drop(journal);
        // Nothing open any more: a clean start, and the count kept.
        let (journal, left) = RunJournal::open(&path).unwrap();
        assert!(left.is_empty());
        assert_eq!(journal.crashes().0, 1);
        drop(journal);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
