-- grain: one as-of date D that the models evaluate.
-- rule: a publication is as of one date, the run's as_of (rules_settings), so this model holds that date
-- alone. Every date-dependent rule (which results count, lookbacks and windows, medication active on D, PA
-- and treatment known on D, the under-monitoring reasons) reads its dates from here and keeps them in its
-- grain, so that the report's trend can evaluate all its month ends in one build with the same definitions:
-- pipelines.models.build_models(as_of_dates=...) then makes this table from the month ends instead. The
-- marts select the run's as_of (rules_settings) from the per-date intermediate models.
with

run_as_of as (
    select rules_settings.as_of
    from rules_settings
),

final as (
    select run_as_of.as_of
    from run_as_of
)

select * from final
