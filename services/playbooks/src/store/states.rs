//! The states of runs, steps and tasks as stored.

/// A run's state as stored in `playbooks.runs.state`, by the numbers of
/// `tenure.playbooks.v1.RunState`. The numbers are named in partial indexes
/// of the migrations: never renumber. SQL that needs one as a constant (so
/// that the planner can use such an index) writes it with `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[repr(i16)]
pub enum RunState {
    Active = 1,
    Completed = 2,
    /// Ended early by the playbook's exit criteria.
    Exited = 3,
    /// A step was dead-lettered; retrying it resumes the run.
    Stalled = 4,
}

/// A step's state as stored in `playbooks.steps.state`, by the numbers of
/// `tenure.playbooks.v1.StepState`; the same rules as [`RunState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[repr(i16)]
pub enum StepState {
    Pending = 1,
    Done = 2,
    Dead = 3,
}

/// A task's state as stored in `playbooks.tasks.status`, by the numbers of
/// `tenure.playbooks.v1.TaskStatus`; written as a constant where SQL needs
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[repr(i16)]
pub enum TaskStatus {
    Open = 1,
    Completed = 2,
}

/// Each state writes as its stored number.
macro_rules! written_as_stored {
    ($($state:ty),*) => {$(
        impl std::fmt::Display for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", *self as i16)
            }
        }
    )*};
}

written_as_stored!(RunState, StepState, TaskStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_states_keep_the_numbers_the_indexes_name() {
        // runs_one_active_idx: state IN (1, 4); steps_due_idx: state = 1;
        // steps_dead_idx: state = 3.
        assert_eq!(RunState::Active.to_string(), "1");
        assert_eq!(RunState::Stalled.to_string(), "4");
        assert_eq!(StepState::Pending.to_string(), "1");
        assert_eq!(StepState::Dead.to_string(), "3");
        assert_eq!(
            (RunState::Completed as i16, RunState::Exited as i16),
            (2, 3)
        );
        assert_eq!(StepState::Done as i16, 2);
        // tasks_assignee_idx orders by status; the API speaks TaskStatus.
        assert_eq!(
            (TaskStatus::Open as i16, TaskStatus::Completed as i16),
            (1, 2)
        );
    }
}
