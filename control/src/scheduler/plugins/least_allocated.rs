//! The scoring strategies of `NodeResourcesFit`: `LeastAllocated` (the default) prefers
//! nodes with the most room left after placing the pod; `MostAllocated` packs pods onto the
//! fullest nodes. Both average per-resource scores by the configured weights.

use super::node_resources_fit::ResourceAmount;
use crate::scheduler::framework::MAX_NODE_SCORE;

/// `(allocatable - requested) * 100 / allocatable`; 0 when over-committed.
pub fn least_requested_score(requested: i64, allocatable: i64) -> i64 {
    if allocatable == 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

/// `requested * 100 / allocatable`, capped at 100.
pub fn most_requested_score(requested: i64, allocatable: i64) -> i64 {
    if allocatable == 0 {
        return 0;
    }
    requested.min(allocatable) * MAX_NODE_SCORE / allocatable
}

/// The weighted average of `score` over resources the node has; resources with nothing
/// allocatable are left out.
pub fn weighted_score(
    amounts: impl IntoIterator<Item = ResourceAmount>,
    score: fn(i64, i64) -> i64,
) -> i64 {
    let (mut total, mut weights) = (0, 0);
    for amount in amounts.into_iter().filter(|a| a.allocatable > 0) {
        total += score(amount.requested, amount.allocatable) * amount.weight;
        weights += amount.weight;
    }
    if weights == 0 { 0 } else { total / weights }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(requested: i64, allocatable: i64, weight: i64) -> ResourceAmount {
        ResourceAmount {
            requested,
            allocatable,
            weight,
        }
    }

    #[test]
    fn least_allocated_favours_room_left_and_zeroes_overcommit() {
        assert_eq!(least_requested_score(1000, 4000), 75);
        assert_eq!(least_requested_score(5000, 4000), 0);
        assert_eq!(least_requested_score(0, 0), 0);
        assert_eq!(
            weighted_score(
                [amount(1000, 4000, 1), amount(3, 4, 1)],
                least_requested_score
            ),
            50
        );
        assert_eq!(
            weighted_score(
                [amount(1000, 4000, 3), amount(3, 4, 1)],
                least_requested_score
            ),
            62
        );
    }

    #[test]
    fn most_allocated_favours_full_nodes() {
        assert_eq!(most_requested_score(3000, 4000), 75);
        assert_eq!(most_requested_score(5000, 4000), 100);
        assert_eq!(weighted_score([amount(1, 0, 1)], most_requested_score), 0);
    }
}
