-- grain: one row per column and value outside that column's accepted values, with how many rows hold it; none
-- when every listed column holds only its accepted values (or null: a null is not a value, as in dbt's
-- accepted_values).
-- rule: the code columns of a model and the values each may take (`values`: column -> list), checked in one
-- query (an accepted_values test per column is a query and about 30 ms of dbt's own work each: 65 of them were
-- as many tests as every other kind together). Strings are compared as text, numbers and booleans as such. A
-- failure's rows name the column and the value.
{% test accepted_values_columns(model, values) %}

with

{% for column, accepted in values.items() %}
{{ "unexpected_" ~ loop.index }} as (
    select
        '{{ column }}' as checked_column,
        cast({{ adapter.quote(column) }} as varchar) as unexpected_value,
        count(*) as unexpected_rows
    from {{ model }}
    where {{ adapter.quote(column) }} is not null
        and {{ adapter.quote(column) }} not in (
            {%- for value in accepted -%}
            {%- if value is string -%}
            '{{ value | replace("'", "''") }}'
            {%- else -%}
            {{ value }}
            {%- endif -%}
            {{ ", " if not loop.last }}
            {%- endfor -%}
        )
    group by all
),
{% endfor %}

final as (
    {% for column in values -%}
    select * from {{ "unexpected_" ~ loop.index }}
    {% if not loop.last %}union all
    {% endif %}
    {%- endfor %}
)

select * from final

{% endtest %}
