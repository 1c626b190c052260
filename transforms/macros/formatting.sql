-- How the models write values into text (details, worklist columns): one spelling for each, so that every
-- detail a care team reads writes a date, a number and a practice the same way.

{#- A date as YYYY-MM-DD. -#}
{% macro iso_date(value) -%}
strftime({{ value }}, '%Y-%m-%d')
{%- endmacro %}

{#- A number as a laboratory would print it: up to 10 significant digits, no trailing zeros (245, 0.35). -#}
{% macro number_text(value) -%}
printf('%.10g', {{ value }})
{%- endmacro %}

{#- A practice as the report and the worklists name it: trimmed, "(no practice)" when there is none. -#}
{% macro practice_label(practice) -%}
coalesce(nullif(trim({{ practice }}), ''), '(no practice)')
{%- endmacro %}

{#- A result's value as the laboratory reported it: the comparator of a censored value, then the number (<50, 245). -#}
{% macro reported_value(comparator, value) -%}
coalesce({{ comparator }}, '') || {{ number_text(value) }}
{%- endmacro %}
