//! Fitting the layers into the token budget (§5): level-of-detail steps
//! from the last cast member backwards, then the eviction passes
//! (location, action, cultures), then the identity floor.

use indexmap::IndexMap;

use super::assemble::{Inputs, Layer};
use super::catalog::Lod;
use super::{est, ComposeError, ComposeErrorKind, BUDGET};
use crate::prompt::tokens::is_py_space;

/// Layers that fit, with what had to give.
pub(crate) struct Fitted {
    pub(crate) layers: Vec<Layer>,
    pub(crate) total: usize,
    pub(crate) evicted: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

fn total_of(layers: &[Layer]) -> usize {
    layers.iter().map(|l| est(&l.text)).sum()
}

/// Cuts a layer's text to about `keep` tokens, noting the eviction.
fn cut(l: &mut Layer, keep: usize, evicted: &mut Vec<String>) {
    if est(&l.text) > keep {
        let n = ((keep as f64 / 1.3).floor() as usize).max(1);
        l.text = l.text.split(is_py_space).filter(|w| !w.is_empty()).take(n).collect::<Vec<_>>().join(" ");
        evicted.push(format!("{}:{}:flourish", l.slot.name(), l.source));
    }
}

/// Steps detail down and evicts flourishes until the layers fit; an error
/// when even the identity floor does not.
pub(crate) fn fit(mut inputs: Inputs, mut plan: IndexMap<String, Lod>) -> Result<Fitted, ComposeError> {
    let mut total = total_of(&inputs.layers(&plan));
    // 1. Level-of-detail steps, from the last plan entry backwards.
    while total > BUDGET {
        let Some(key) = plan.iter().rev().find(|(_, l)| **l != Lod::Background).map(|(k, _)| k.clone()) else { break };
        let l = plan[&key];
        plan.insert(key, l.down().expect("not background"));
        total = total_of(&inputs.layers(&plan));
    }
    // 2. Eviction passes.
    let mut evicted = Vec::new();
    let any_pass = total > BUDGET;
    if total > BUDGET {
        if let Some(l) = inputs.location.as_mut() {
            cut(l, 8, &mut evicted);
        }
        total = total_of(&inputs.layers(&plan));
    }
    if total > BUDGET {
        cut(&mut inputs.action, 8, &mut evicted);
        total = total_of(&inputs.layers(&plan));
    }
    if total > BUDGET {
        for l in inputs.cultures.iter_mut() {
            cut(l, 12, &mut evicted);
        }
        total = total_of(&inputs.layers(&plan));
    }
    let layers = inputs.layers(&plan);
    let mut warnings = Vec::new();
    if any_pass {
        warnings.push(format!("token budget eviction applied: {total}/{BUDGET}"));
    }
    if total > BUDGET {
        let mut sums: IndexMap<&str, usize> = IndexMap::new();
        for l in &layers {
            *sums.entry(l.slot.name()).or_insert(0) += est(&l.text);
        }
        let body = sums.iter().map(|(s, n)| format!("'{s}': {n}")).collect::<Vec<_>>().join(", ");
        return Err(ComposeError {
            kind: ComposeErrorKind::BudgetError,
            message: format!("identity floor breached: {{{body}}}"),
        });
    }
    Ok(Fitted { layers, total, evicted, warnings })
}
