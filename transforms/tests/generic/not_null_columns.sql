-- grain: one row per listed column that holds a null in the model; none when every listed column is filled.
-- rule: the columns a model declares never null, checked in one scan of the model (a `not_null` test per
-- column is a query and about 30 ms of dbt's own work each: 124 of them were a third of a night's tests). A
-- failure's rows name the columns and how many nulls each has.
{% test not_null_columns(model, columns) %}

with counted as (
    select
        {%- for column in columns %}
        count(*) filter (where {{ adapter.quote(column) }} is null) as {{ adapter.quote(column) }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ model }}
),

unpivoted as (
    unpivot counted on columns(*) into name null_column value null_rows
),

final as (
    select unpivoted.null_column, unpivoted.null_rows
    from unpivoted
    where unpivoted.null_rows > 0
)

select * from final

{% endtest %}
