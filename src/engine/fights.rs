//! Fights: a field the daemon takes back from another manager round after round. Two
//! writers that each believe they own a field (another stowage file, a controller, a
//! person's script) would otherwise flip it as fast as the watches report it; the
//! daemon backs off exponentially instead, and says with whom it is fighting over what.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Takeover;
use crate::velero::{FieldPath, ObjectRef};

/// Takeovers of one field within [`WINDOW`] of each other, from this many on, are a
/// fight.
pub const FIGHT_ROUNDS: u32 = 3;
/// How close takeovers of one field must follow each other to count as one fight.
pub const WINDOW: Duration = Duration::from_secs(120);
/// The longest wait, however long the fight (and never longer than `--resync`).
pub const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// The first wait; each further takeover doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Field {
    rounds: u32,
    last: Instant,
    managers: Vec<String>,
}

/// The fights going on now, by object and field.
#[derive(Debug, Default)]
pub struct Fights {
    fields: BTreeMap<(ObjectRef, FieldPath), Field>,
}

/// The worst fight, and how long to wait before taking the field back again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub object: ObjectRef,
    pub field: FieldPath,
    pub managers: Vec<String>,
    /// Takeovers of the field in this fight.
    pub rounds: u32,
    pub wait: Duration,
    /// When the fight is over unless the field is taken back again: a window after
    /// the last takeover.
    pub ends: Instant,
}

impl Backoff {
    /// Whether the fight still goes on at `now`.
    pub fn goes_on(&self, now: Instant) -> bool {
        now < self.ends
    }
}

impl Fights {
    /// Counts one round's takeovers, made at `now`; forgets fields left alone for
    /// longer than [`WINDOW`].
    pub fn record(&mut self, takeovers: &[Takeover], now: Instant) {
        self.fields
            .retain(|_, field| now.saturating_duration_since(field.last) <= WINDOW);
        for takeover in takeovers {
            let field = self
                .fields
                .entry((takeover.object.clone(), takeover.field.clone()))
                .or_insert(Field {
                    rounds: 0,
                    last: now,
                    managers: Vec::new(),
                });
            field.rounds += 1;
            field.last = now;
            field.managers = takeover.managers.clone();
        }
    }

    /// The fight with the most takeovers, if any field reached [`FIGHT_ROUNDS`] within
    /// the window before `now`; the wait doubles with each takeover past that, up to
    /// `longest`.
    pub fn backoff(&self, now: Instant, longest: Duration) -> Option<Backoff> {
        let ((object, field), worst) = self
            .fields
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last) <= WINDOW)
            .filter(|(_, f)| f.rounds >= FIGHT_ROUNDS)
            .max_by_key(|(_, f)| f.rounds)?;
        let doublings = (worst.rounds - FIGHT_ROUNDS).min(16);
        let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(longest);
        Some(Backoff {
            object: object.clone(),
            field: field.clone(),
            managers: worst.managers.clone(),
            rounds: worst.rounds,
            wait,
            ends: worst.last + WINDOW,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::velero::Kind;

    fn takeover(field: &str) -> Takeover {
        Takeover {
            object: ObjectRef {
                kind: Kind::BackupStorageLocation,
                namespace: "velero".into(),
                name: "primary".into(),
            },
            field: FieldPath::of(field.split('.')),
            managers: vec!["kubectl-edit".into()],
        }
    }

    #[test]
    fn a_field_taken_back_again_and_again_backs_off_exponentially() {
        let mut fights = Fights::default();
        let start = Instant::now();
        let longest = Duration::from_secs(300);
        let prefix = takeover("spec.objectStorage.prefix");
        for round in 1..FIGHT_ROUNDS {
            fights.record(
                std::slice::from_ref(&prefix),
                start + Duration::from_secs(round.into()),
            );
            assert_eq!(
                fights.backoff(start + Duration::from_secs(round.into()), longest),
                None
            );
        }
        let waits: Vec<u64> = (FIGHT_ROUNDS..FIGHT_ROUNDS + 4)
            .map(|round| {
                let now = start + Duration::from_secs(round.into());
                fights.record(std::slice::from_ref(&prefix), now);
                let backoff = fights.backoff(now, longest).expect("a fight");
                assert_eq!(backoff.field.to_string(), "spec.objectStorage.prefix");
                assert_eq!(backoff.managers, ["kubectl-edit"]);
                backoff.wait.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        // Capped at the longest wait.
        for round in 0..20 {
            fights.record(
                std::slice::from_ref(&prefix),
                start + Duration::from_secs(10 + round),
            );
        }
        let capped = fights
            .backoff(start + Duration::from_secs(30), Duration::from_secs(60))
            .unwrap();
        assert_eq!(capped.wait, Duration::from_secs(60));
        // A report of it holds only until a window after the last takeover (29 s).
        assert!(
            capped.goes_on(start + Duration::from_secs(29) + WINDOW - Duration::from_millis(1))
        );
        assert!(!capped.goes_on(start + Duration::from_secs(29) + WINDOW));
        // Left alone for longer than the window, the fight is over.
        let later = start + Duration::from_secs(30) + WINDOW + Duration::from_secs(1);
        assert_eq!(fights.backoff(later, longest), None);
        fights.record(&[], later);
        assert!(fights.fields.is_empty());
    }

    #[test]
    fn takeovers_spread_over_several_fields_are_no_fight() {
        let mut fights = Fights::default();
        let now = Instant::now();
        for field in ["spec.a", "spec.b", "spec.c", "spec.d"] {
            fights.record(&[takeover(field)], now);
        }
        assert_eq!(fights.backoff(now, Duration::from_secs(300)), None);
    }
}
