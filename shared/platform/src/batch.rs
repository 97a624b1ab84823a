//! Batch reads: a call names up to [`MAX_IDS`] ids and is answered in id
//! order, each id once, with the ids it found nothing for named apart.

use std::collections::HashSet;

use crate::error::Violations;

/// The most ids one batch call may name.
pub const MAX_IDS: usize = 1000;

/// The ids of a batch call in `field`, sorted and each once; adds
/// violations unless there are 1 to [`MAX_IDS`], each non-empty and at
/// most `max_len` characters (`field[3]` names a bad one).
pub fn ids(
    mut ids: Vec<String>,
    field: &str,
    max_len: usize,
    violations: &mut Violations,
) -> Vec<String> {
    violations.check(
        (1..=MAX_IDS).contains(&ids.len()),
        field,
        format!("must hold between 1 and {MAX_IDS} ids"),
    );
    for (i, id) in ids.iter().enumerate() {
        violations.require_text(id, format!("{field}[{i}]"), max_len);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The ids `asked` that are not among those `found`, in their order.
pub fn missing<'a>(asked: &[String], found: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let found: HashSet<&str> = found.into_iter().collect();
    asked
        .iter()
        .filter(|id| !found.contains(id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_sorted_once_and_bad_ones_are_named() {
        let mut violations = Violations::default();
        let got = ids(
            vec!["b".into(), "a".into(), "b".into()],
            "account_ids",
            8,
            &mut violations,
        );
        assert_eq!(got, ["a", "b"]);
        assert!(violations.is_empty());

        let mut violations = Violations::default();
        ids(
            vec!["a".into(), String::new(), "x".repeat(9)],
            "ids",
            8,
            &mut violations,
        );
        let fields: Vec<&str> = violations.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["ids[1]", "ids[2]"]);

        let mut violations = Violations::default();
        ids(Vec::new(), "ids", 8, &mut violations);
        ids(vec!["a".into(); MAX_IDS + 1], "ids", 8, &mut violations);
        assert_eq!(violations.len(), 2);
    }

    #[test]
    fn missing_keeps_the_order_asked() {
        let asked = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(missing(&asked, ["b"]), ["a", "c"]);
        assert!(missing(&asked, ["a", "b", "c"]).is_empty());
    }
}
