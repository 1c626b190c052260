-- grain: one practice (null: the whole population), follow-up window (1m, 3-6m, 12m) and route class
-- (intramuscular, oral, unknown, and all: every route class together), on the run's as-of date.
-- rule (docs/models.md, Treatment response): the counts of treatment_response and three shares, each with its
-- Wilson score 95 % interval (z of funnel_bounds' upper_95, the same z as the funnel plots' 95 % limits):
-- not_deficient and at_target among the windows with a b12 result (with_result), and with_result among the
-- closed windows (recheck coverage: a window that has ended had a recheck at all). A share whose denominator is 0
-- has no value and no interval. Each bound is kept on its side of the share (floating-point rounding at 0 %
-- and 100 % would otherwise put it a hair across). Every window and route class has a row for the whole population and for every
-- practice with a treatment_response row (0 when none is counted), so that the report reads, never computes.
-- reference_not_deficient_share: the published figure the oral 1m line is compared with (rules setting
-- response_oral_1m_reference_share, the seed's 88.5 %), on the oral 1m rows only.
with

settings as (
    select rules_settings.response_oral_1m_reference_share
    from {{ source('rules', 'rules_settings') }} as rules_settings
),

wilson as (
    select funnel_bounds.z
    from {{ ref('funnel_bounds') }} as funnel_bounds
    where funnel_bounds.bound = 'upper_95'
),

responses as (
    select
        treatment_response.practice,
        treatment_response.window,
        treatment_response.route_class,
        treatment_response.window_closed,
        treatment_response.result_date is not null as has_result,
        treatment_response.not_deficient,
        treatment_response.at_target
    from {{ ref('treatment_response') }} as treatment_response
),

windows as (
    select window_names.*
    from (values ('1m', 1), ('3-6m', 2), ('12m', 3)) as window_names ("window", window_order)
),

route_classes as (
    select route_class_names.*
    from (values ('all', 0), ('intramuscular', 1), ('oral', 2), ('unknown', 3))
        as route_class_names (route_class, route_order)
),

practices as (
    select distinct responses.practice
    from responses
    union all
    select null
),

grid as (
    select practices.practice, windows.window, windows.window_order, route_classes.route_class,
           route_classes.route_order
    from practices
    cross join windows
    cross join route_classes
),

counted as (
    select
        responses.practice,
        responses.window,
        coalesce(responses.route_class, 'all') as route_class,
        count(*) as windows_begun,
        count(*) filter (where responses.has_result) as with_result,
        count(*) filter (where responses.not_deficient) as not_deficient,
        count(*) filter (where responses.at_target) as at_target,
        count(*) filter (where responses.window_closed) as closed,
        count(*) filter (where responses.window_closed and responses.has_result) as closed_with_result
    from responses
    group by grouping sets (
        (responses.practice, responses.window, responses.route_class),
        (responses.practice, responses.window),
        (responses.window, responses.route_class),
        (responses.window)
    )
),

counts as (
    -- the grouping sets without practice are the whole population: their practice is null like the grid's
    select
        grid.practice,
        grid.window,
        grid.window_order,
        grid.route_class,
        grid.route_order,
        coalesce(counted.windows_begun, 0) as windows_begun,
        coalesce(counted.with_result, 0) as with_result,
        coalesce(counted.not_deficient, 0) as not_deficient,
        coalesce(counted.at_target, 0) as at_target,
        coalesce(counted.closed, 0) as closed,
        coalesce(counted.closed_with_result, 0) as closed_with_result
    from grid
    left join counted
        on counted.practice is not distinct from grid.practice
       and counted.window = grid.window
       and counted.route_class = grid.route_class
),

shares as (
    select
        counts.*,
        share.name,
        share.successes,
        share.trials,
        share.successes / share.trials as p
    from counts
    cross join lateral (
        select 'not_deficient' as name, counts.not_deficient as successes, counts.with_result as trials
        union all select 'at_target', counts.at_target, counts.with_result
        union all select 'recheck', counts.closed_with_result, counts.closed
    ) as share
    where share.trials > 0
),

intervals as (
    -- Wilson score interval: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    select
        shares.practice,
        shares.window,
        shares.route_class,
        shares.name,
        shares.p,
        (shares.p + wilson.z * wilson.z / (2 * shares.trials)) / (1 + wilson.z * wilson.z / shares.trials)
            as centre,
        wilson.z * sqrt(shares.p * (1 - shares.p) / shares.trials
                        + power(wilson.z / (2 * shares.trials), 2))
            / (1 + wilson.z * wilson.z / shares.trials) as half_width
    from shares
    cross join wilson
),

final as (
    select
        counts.practice,
        counts.window,
        counts.route_class,
        counts.windows_begun,
        counts.with_result,
        counts.not_deficient,
        not_deficient.p as not_deficient_share,
        least(not_deficient.p, greatest(0, not_deficient.centre - not_deficient.half_width)) as not_deficient_lower_95,
        greatest(not_deficient.p, least(1, not_deficient.centre + not_deficient.half_width)) as not_deficient_upper_95,
        counts.at_target,
        at_target.p as at_target_share,
        least(at_target.p, greatest(0, at_target.centre - at_target.half_width)) as at_target_lower_95,
        greatest(at_target.p, least(1, at_target.centre + at_target.half_width)) as at_target_upper_95,
        counts.closed,
        counts.closed_with_result,
        recheck.p as recheck_share,
        least(recheck.p, greatest(0, recheck.centre - recheck.half_width)) as recheck_lower_95,
        greatest(recheck.p, least(1, recheck.centre + recheck.half_width)) as recheck_upper_95,
        case
            when counts.window = '1m' and counts.route_class = 'oral' then settings.response_oral_1m_reference_share
        end as reference_not_deficient_share,
        run_as_of.as_of
    from counts
    cross join {{ ref('stg_run_as_of') }} as run_as_of
    cross join settings
    left join intervals as not_deficient
        on not_deficient.practice is not distinct from counts.practice
       and not_deficient.window = counts.window
       and not_deficient.route_class = counts.route_class
       and not_deficient.name = 'not_deficient'
    left join intervals as at_target
        on at_target.practice is not distinct from counts.practice
       and at_target.window = counts.window
       and at_target.route_class = counts.route_class
       and at_target.name = 'at_target'
    left join intervals as recheck
        on recheck.practice is not distinct from counts.practice
       and recheck.window = counts.window
       and recheck.route_class = counts.route_class
       and recheck.name = 'recheck'
    order by counts.practice nulls first, counts.window_order, counts.route_order
)

select * from final
