//! The retention choice by count, as a pure function: which cold segments to delete now.
//! The worker supplies what it knows (archived, held for a reader, waiting for a retry)
//! through `deletable`; the disk budget's choice is in [`super::budget`].

/// The oldest cold segments (`cold`, oldest first) to delete so that at most `keep` remain,
/// not counting those already being deleted (`freeing`), at most `room` of them. Stops at the
/// first segment `deletable` refuses: deleting a newer one would leave a gap in the log.
pub(crate) fn oldest_to_delete(
    cold: impl IntoIterator<Item = u64>,
    freeing: &[u64],
    keep: usize,
    room: usize,
    mut deletable: impl FnMut(u64) -> bool,
) -> Vec<u64> {
    let left: Vec<u64> = cold.into_iter().filter(|i| !freeing.contains(i)).collect();
    let excess = left.len().saturating_sub(keep).min(room);
    left.into_iter()
        .take(excess)
        .take_while(|&i| deletable(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_the_oldest_beyond_the_limit() {
        assert_eq!(oldest_to_delete(0..10, &[], 7, 32, |_| true), [0, 1, 2]);
        assert!(oldest_to_delete(0..5, &[], 7, 32, |_| true).is_empty());
    }

    #[test]
    fn segments_being_deleted_count_as_gone() {
        assert_eq!(oldest_to_delete(0..10, &[0, 1], 7, 32, |_| true), [2]);
    }

    #[test]
    fn stops_at_the_first_refused_so_the_log_has_no_gap() {
        assert_eq!(oldest_to_delete(0..10, &[], 5, 32, |i| i != 2), [0, 1]);
        assert!(oldest_to_delete(0..10, &[], 5, 32, |i| i != 0).is_empty());
    }

    #[test]
    fn never_more_than_room_at_once() {
        assert_eq!(oldest_to_delete(0..100, &[], 10, 4, |_| true), [0, 1, 2, 3]);
    }
}
