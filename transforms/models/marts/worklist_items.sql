-- grain: one item a worklist row can hold: an under-monitoring reason, a flag, DEFICIENT in each of its
-- situations (deficient_actions: neurological_involvement, untreated, treated) or BORDERLINE_NEEDS_MMA.
-- rule: one urgency order across every item, 1 the most urgent: the tiers of the seed worklist_tiers in order
--   1  DEFICIENT with neurological involvement (deficient_actions: seek urgent specialist advice)
--   2  the flag FOLATE_BEFORE_B12 (folic acid before B12 can mask the anaemia while nerve damage goes on)
--   3  DEFICIENT, untreated
--   4  every under-monitoring reason, by reason_codes.urgency
--   5  every other flag, by flag_codes.urgency
--   6  DEFICIENT, treated
--   7  BORDERLINE_NEEDS_MMA
-- numbered through, within a tier by the item's own urgency (with the seed vocabulary: 1 to 3, the nine reasons
-- 4 to 12, the four other flags 13 to 16, then 17 and 18). A tier with a code holds that item; one without holds
-- every item of its kind that no other tier names. next_action is the item's own table's, else the tier's (order
-- MMA for BORDERLINE_NEEDS_MMA). The worklist mart and the worklists' README read the order from here, so it is
-- defined once.
with

tiers as (
    select
        worklist_tiers.tier,
        worklist_tiers.kind,
        nullif(worklist_tiers.code, '') as code,
        nullif(worklist_tiers.next_action, '') as next_action
    from {{ ref('worklist_tiers') }} as worklist_tiers
),

vocabulary as (
    -- every item the worklist can hold, with its urgency and next action in its own table
    select
        'deficient' as kind,
        'DEFICIENT' as item,
        deficient_actions.situation as code,
        deficient_actions.urgency as kind_urgency,
        deficient_actions.next_action,
        'Deficient, ' || replace(deficient_actions.situation, '_', ' ') as label
    from {{ ref('deficient_actions') }} as deficient_actions
    union all
    select 'reason', reason_codes.reason, reason_codes.reason, reason_codes.urgency, reason_codes.next_action,
           reason_codes.label
    from {{ ref('reason_codes') }} as reason_codes
    union all
    select 'flag', flag_codes.flag, flag_codes.flag, flag_codes.urgency, flag_codes.next_action, flag_codes.label
    from {{ ref('flag_codes') }} as flag_codes
    union all
    select 'borderline', 'BORDERLINE_NEEDS_MMA', 'needs_mma', 1, null, (
        select status_codes.label
        from {{ ref('status_codes') }} as status_codes
        where status_codes.status = 'borderline_needs_mma'
    )
),

urgency_scale as (
    -- a tier with a code holds that item; one without holds every item of its kind no other tier names
    select
        row_number() over (order by tiers.tier, vocabulary.kind_urgency, vocabulary.code) as urgency,
        vocabulary.item,
        vocabulary.code,
        vocabulary.kind,
        vocabulary.label,
        coalesce(vocabulary.next_action, tiers.next_action) as next_action
    from vocabulary
    inner join tiers
        on tiers.kind = vocabulary.kind
       and (
           tiers.code = vocabulary.code
           or (
               tiers.code is null
               and vocabulary.code not in (
                   select named.code from tiers as named where named.kind = vocabulary.kind and named.code is not null
               )
           )
       )
),

final as (
    select * from urgency_scale
    order by urgency_scale.urgency
)

select * from final
