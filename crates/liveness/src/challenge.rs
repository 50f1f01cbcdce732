//! The head movements an attempt asks for.

use serde::{Deserialize, Serialize};

/// One movement. Left and right are the user's own: turning to one's left
/// points the nose toward the right edge of an unmirrored camera image,
/// which is negative yaw in [`facegate_vision::Quality`]'s convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Challenge {
    TurnLeft,
    TurnRight,
    LookStraight,
}

impl Challenge {
    pub const ALL: [Challenge; 3] = [Challenge::TurnLeft, Challenge::TurnRight, Challenge::LookStraight];

    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::TurnLeft => "TURN_LEFT",
            Challenge::TurnRight => "TURN_RIGHT",
            Challenge::LookStraight => "LOOK_STRAIGHT",
        }
    }

    /// Parses `TURN_LEFT`, `TURN_RIGHT` or `LOOK_STRAIGHT`.
    pub fn parse(s: &str) -> Option<Challenge> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// A sequence of 2 or 3 distinct movements in an order chosen by
    /// `random` (two bytes from a secure source). Any two distinct
    /// movements include a turn, which the 3D check needs.
    pub fn sequence(random: [u8; 2]) -> Vec<Challenge> {
        let length = if random[0] & 1 == 0 { 2 } else { 3 };
        let mut pool = Self::ALL.to_vec();
        let mut pick = usize::from(random[1]);
        let mut out = Vec::with_capacity(length);
        for _ in 0..length {
            let i = pick % pool.len();
            pick /= pool.len();
            out.push(pool.remove(i));
        }
        out
    }

    /// Every ordered sequence [`Challenge::sequence`] can produce.
    pub fn all_sequences() -> Vec<Vec<Challenge>> {
        let mut all: Vec<Vec<Challenge>> = (0..=255u8)
            .flat_map(|b| [Self::sequence([0, b]), Self::sequence([1, b])])
            .collect();
        all.sort_by_key(|s| s.iter().map(|c| c.as_str()).collect::<Vec<_>>());
        all.dedup();
        all
    }

    /// The sign of yaw this movement asks for: −1, +1, or 0 for straight.
    pub fn direction(self) -> i8 {
        match self {
            Challenge::TurnLeft => -1,
            Challenge::TurnRight => 1,
            Challenge::LookStraight => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_distinct_movements_with_a_turn() {
        let all = Challenge::all_sequences();
        // 3·2 orderings of two movements and 3·2·1 of three.
        assert_eq!(all.len(), 12);
        for s in &all {
            let mut unique = s.clone();
            unique.dedup();
            assert_eq!(unique.len(), s.len());
            assert!(s.iter().any(|c| c.direction() != 0), "{s:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for c in Challenge::ALL {
            assert_eq!(Challenge::parse(c.as_str()), Some(c));
        }
        assert_eq!(Challenge::parse("turn_left"), None);
    }
}
