//! Prompt composition. So far: the token estimator the composer's budget is
//! defined in (tiers-and-prompts.md §3.3), shared with `validate-pack`.

pub mod tokens;
