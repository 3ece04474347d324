//! The disk budget of uploads in flight, so that uploads can never fill the data
//! partition on which `state/` is saved.
//!
//! Every accepted upload (an image for `create`, a block upload) reserves the byte count
//! its request announced before the server answers `Proceed`, and gives it back when its
//! sink goes away (committed, digest mismatch, cancel, abort, dropped connection, error):
//! the [`Reservation`] is an RAII guard held by the sink. An upload is refused when
//!
//! - it alone is larger than the budget, or the sum of the reservations would exceed it;
//! - or the data partition's free space (`statvfs`, blocks available), less what the
//!   uploads in flight have yet to write, would drop below [`FREE_FLOOR_BYTES`].
//!
//! Block uploads count like images: they are written to a new temporary file beside the
//! volume (zero-extended and renamed over it only at the end), so they take their whole
//! size in new blocks while they run.
//!
//! The decision is the pure [`check`]; [`UploadBudget`] adds the shared counters and the
//! `statvfs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use petrel_proto::msg::{Error, ErrorKind};

/// The default budget of uploads in flight (`petreld --upload-budget-mib`).
pub const DEFAULT_UPLOAD_BUDGET_BYTES: u64 = 1 << 30;

/// What uploads must leave free on the data partition.
pub const FREE_FLOOR_BYTES: u64 = 64 << 20;

const MIB: u64 = 1 << 20;

/// The limits [`check`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most the uploads in flight may announce in total.
    pub budget_bytes: u64,
    /// What must stay free on the data partition.
    pub floor_bytes: u64,
}

/// The uploads in flight, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The sizes their requests announced.
    pub announced_bytes: u64,
    /// What they have yet to write (the free space does not show it yet).
    pub unwritten_bytes: u64,
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Larger than the whole budget: it never fits.
    #[error(
        "an upload of {} is larger than the upload budget of {} (petreld --upload-budget-mib)",
        size(*request_bytes),
        size(*budget_bytes)
    )]
    OverBudget {
        /// The announced size.
        request_bytes: u64,
        /// The budget.
        budget_bytes: u64,
    },
    /// Other uploads hold too much of the budget now.
    #[error(
        "uploads in flight hold {} of the upload budget of {}; {} more do not fit until they end",
        size(*held_bytes),
        size(*budget_bytes),
        size(*request_bytes)
    )]
    BudgetHeld {
        /// The announced size.
        request_bytes: u64,
        /// What the uploads in flight announced.
        held_bytes: u64,
        /// The budget.
        budget_bytes: u64,
    },
    /// Not enough free space on the data partition, whatever else runs.
    #[error(
        "an upload of {} does not fit on the data partition: {} free, of which {} must stay free",
        size(*request_bytes),
        size(*free_bytes),
        size(*floor_bytes)
    )]
    NoSpace {
        /// The announced size.
        request_bytes: u64,
        /// Free space now.
        free_bytes: u64,
        /// The floor.
        floor_bytes: u64,
    },
    /// Not enough free space once the uploads in flight have written the rest.
    #[error(
        "an upload of {} does not fit on the data partition until the uploads in flight end: \
         {} free, {} still to be written by them, {} must stay free",
        size(*request_bytes),
        size(*free_bytes),
        size(*unwritten_bytes),
        size(*floor_bytes)
    )]
    SpaceHeld {
        /// The announced size.
        request_bytes: u64,
        /// Free space now.
        free_bytes: u64,
        /// What the uploads in flight have yet to write.
        unwritten_bytes: u64,
        /// The floor.
        floor_bytes: u64,
    },
}

impl Refusal {
    /// The protocol's kind: `QuotaExceeded` when the upload cannot fit as things are,
    /// `Busy` when it would once the uploads in flight end.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::OverBudget { .. } | Self::NoSpace { .. } => ErrorKind::QuotaExceeded,
            Self::BudgetHeld { .. } | Self::SpaceHeld { .. } => ErrorKind::Busy,
        }
    }
}

/// `N MiB` when whole, else `N bytes`.
fn size(bytes: u64) -> String {
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether an upload of `request_bytes` may start, with `in_flight` running and
/// `free_bytes` free on the data partition.
pub fn check(
    limits: Limits,
    in_flight: InFlight,
    free_bytes: u64,
    request_bytes: u64,
) -> Result<(), Refusal> {
    if request_bytes > limits.budget_bytes {
        return Err(Refusal::OverBudget {
            request_bytes,
            budget_bytes: limits.budget_bytes,
        });
    }
    if in_flight.announced_bytes.saturating_add(request_bytes) > limits.budget_bytes {
        return Err(Refusal::BudgetHeld {
            request_bytes,
            held_bytes: in_flight.announced_bytes,
            budget_bytes: limits.budget_bytes,
        });
    }
    let room_bytes = free_bytes.saturating_sub(limits.floor_bytes);
    if request_bytes > room_bytes {
        return Err(Refusal::NoSpace {
            request_bytes,
            free_bytes,
            floor_bytes: limits.floor_bytes,
        });
    }
    if in_flight.unwritten_bytes.saturating_add(request_bytes) > room_bytes {
        return Err(Refusal::SpaceHeld {
            request_bytes,
            free_bytes,
            unwritten_bytes: in_flight.unwritten_bytes,
            floor_bytes: limits.floor_bytes,
        });
    }
    Ok(())
}

/// The shared budget of one daemon.
#[derive(Debug)]
pub struct UploadBudget {
    limits: Limits,
    /// A directory on the data partition (for `statvfs`).
    dir: PathBuf,
    in_flight: Mutex<InFlight>,
}

impl UploadBudget {
    /// A budget of `budget_bytes` for uploads to the partition holding `dir`, keeping
    /// [`FREE_FLOOR_BYTES`] free.
    pub fn new(dir: PathBuf, budget_bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            limits: Limits {
                budget_bytes,
                floor_bytes: FREE_FLOOR_BYTES,
            },
            dir,
            in_flight: Mutex::new(InFlight::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The uploads in flight now.
    pub fn in_flight(&self) -> InFlight {
        *self.lock()
    }

    /// Reserves `request_bytes` for an upload, or says why not (the error to reply).
    pub fn reserve(self: &Arc<Self>, request_bytes: u64) -> Result<Reservation, Error> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot read the free space of {}: {e}", self.dir.display()),
            )
        })?;
        let free_bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
        let mut in_flight = self.lock();
        if let Err(refusal) = check(self.limits, *in_flight, free_bytes, request_bytes) {
            log::warn!("upload refused: {refusal}");
            return Err(Error::new(refusal.kind(), refusal.to_string()));
        }
        in_flight.announced_bytes = in_flight.announced_bytes.saturating_add(request_bytes);
        in_flight.unwritten_bytes = in_flight.unwritten_bytes.saturating_add(request_bytes);
        Ok(Reservation {
            budget: Arc::clone(self),
            announced_bytes: request_bytes,
            unwritten_bytes: request_bytes,
        })
    }
}

/// One upload's share of the budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<UploadBudget>,
    announced_bytes: u64,
    unwritten_bytes: u64,
}

impl Reservation {
    /// `n` more bytes are on disk (and so in the free space figure).
    pub fn wrote(&mut self, n: u64) {
        let n = n.min(self.unwritten_bytes);
        if n == 0 {
            return;
        }
        self.unwritten_bytes -= n;
        let mut in_flight = self.budget.lock();
        in_flight.unwritten_bytes = in_flight.unwritten_bytes.saturating_sub(n);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_flight = self.budget.lock();
        in_flight.announced_bytes = in_flight
            .announced_bytes
            .saturating_sub(self.announced_bytes);
        in_flight.unwritten_bytes = in_flight
            .unwritten_bytes
            .saturating_sub(self.unwritten_bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMITS: Limits = Limits {
        budget_bytes: 1000,
        floor_bytes: 100,
    };

    fn flight(announced_bytes: u64, unwritten_bytes: u64) -> InFlight {
        InFlight {
            announced_bytes,
            unwritten_bytes,
        }
    }

    fn kind(r: Result<(), Refusal>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn the_budget_bounds_the_sum_of_announced_sizes() {
        let free = u64::MAX;
        assert_eq!(check(LIMITS, flight(0, 0), free, 1000), Ok(()));
        assert_eq!(
            kind(check(LIMITS, flight(0, 0), free, 1001)),
            Some(ErrorKind::QuotaExceeded)
        );
        assert_eq!(check(LIMITS, flight(400, 0), free, 600), Ok(()));
        // Written or not, an upload in flight holds its whole announcement.
        assert_eq!(
            check(LIMITS, flight(400, 0), free, 601),
            Err(Refusal::BudgetHeld {
                request_bytes: 601,
                held_bytes: 400,
                budget_bytes: 1000
            })
        );
        assert_eq!(
            kind(check(LIMITS, flight(u64::MAX, 0), free, 1)),
            Some(ErrorKind::Busy)
        );
        assert_eq!(check(LIMITS, flight(0, 0), free, 0), Ok(()));
    }

    #[test]
    fn the_floor_stays_free() {
        // 600 free: 500 may be uploaded, 501 not.
        assert_eq!(check(LIMITS, flight(0, 0), 600, 500), Ok(()));
        assert_eq!(
            check(LIMITS, flight(0, 0), 600, 501),
            Err(Refusal::NoSpace {
                request_bytes: 501,
                free_bytes: 600,
                floor_bytes: 100
            })
        );
        // Below the floor already: only an empty upload fits.
        assert_eq!(check(LIMITS, flight(0, 0), 50, 0), Ok(()));
        assert_eq!(
            kind(check(LIMITS, flight(0, 0), 50, 1)),
            Some(ErrorKind::QuotaExceeded)
        );
        assert_eq!(
            kind(check(LIMITS, flight(0, 0), 0, 1)),
            Some(ErrorKind::QuotaExceeded)
        );
    }

    #[test]
    fn what_others_have_yet_to_write_counts_against_the_free_space() {
        // 600 free, another upload will still write 300: 200 fit, 201 wait.
        assert_eq!(check(LIMITS, flight(300, 300), 600, 200), Ok(()));
        assert_eq!(
            check(LIMITS, flight(300, 300), 600, 201),
            Err(Refusal::SpaceHeld {
                request_bytes: 201,
                free_bytes: 600,
                unwritten_bytes: 300,
                floor_bytes: 100
            })
        );
        // What it wrote already is out of the free space: not counted twice.
        assert_eq!(check(LIMITS, flight(300, 0), 600, 500), Ok(()));
        assert_eq!(
            kind(check(LIMITS, flight(300, u64::MAX), 600, 1)),
            Some(ErrorKind::Busy)
        );
    }

    #[test]
    fn messages_name_the_sizes() {
        let e = check(LIMITS, flight(0, 0), u64::MAX, 2000).unwrap_err();
        assert!(e.to_string().contains("2000 bytes"), "{e}");
        assert!(e.to_string().contains("--upload-budget-mib"), "{e}");
        assert_eq!(size(2 << 20), "2 MiB");
        assert_eq!(size(MIB + 1), "1048577 bytes");
        assert_eq!(size(0), "0 bytes");
    }

    #[test]
    fn reservations_are_given_back_on_drop() {
        let dir = std::env::temp_dir();
        let budget = UploadBudget::new(dir, 1000);
        let mut a = budget.reserve(600).unwrap();
        assert_eq!(budget.in_flight(), flight(600, 600));
        let refused = budget.reserve(401).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Busy);
        a.wrote(250);
        a.wrote(10_000); // more than announced: clamped
        assert_eq!(budget.in_flight(), flight(600, 0));
        let b = budget.reserve(400).unwrap();
        assert_eq!(budget.in_flight(), flight(1000, 400));
        drop(a);
        assert_eq!(budget.in_flight(), flight(400, 400));
        drop(b);
        assert_eq!(budget.in_flight(), InFlight::default());
        assert_eq!(
            budget.reserve(1001).unwrap_err().kind,
            ErrorKind::QuotaExceeded
        );
        assert_eq!(budget.in_flight(), InFlight::default());
    }

    #[test]
    fn an_unreadable_partition_refuses() {
        let budget = UploadBudget::new(PathBuf::from("/nonexistent/petrel/budget"), 1000);
        assert_eq!(budget.reserve(1).unwrap_err().kind, ErrorKind::Internal);
        assert_eq!(budget.in_flight(), InFlight::default());
    }
}
