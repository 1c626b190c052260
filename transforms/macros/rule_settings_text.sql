-- Texts with `{setting}` placeholders (a seed's plain definitions) filled with the values of the rules in force
-- (source rules_settings), so that an analyst reading the warehouse sees the numbers the rules use. Values are
-- written as the report writes them: integers with thousands separators, other numbers as number_text.

{#- An expression: `text` with every {setting} of rules_settings replaced by its value. Run time only (it reads
    the columns of rules_settings); at parse time it returns `text` unchanged. -#}
{% macro fill_rule_settings(text) -%}
{%- if execute -%}
{%- set settings = source('rules', 'rules_settings') -%}
{%- set ns = namespace(expression=text) -%}
{%- for column in adapter.get_columns_in_relation(settings) -%}
{%- set kind = column.dtype | lower -%}
{%- if kind in ('integer', 'bigint', 'smallint', 'hugeint', 'tinyint') -%}
{%- set value = "format('{:,}', " ~ column.name ~ ")" -%}
{%- elif kind in ('double', 'float', 'real') or kind.startswith('decimal') -%}
{%- set value = number_text(column.name) -%}
{%- else -%}
{%- set value = "cast(" ~ column.name ~ " as varchar)" -%}
{%- endif -%}
{%- set ns.expression = "replace(" ~ ns.expression ~ ", '{" ~ column.name ~ "}', coalesce((select " ~ value ~ " from " ~ settings ~ "), '{" ~ column.name ~ "}'))" -%}
{%- endfor -%}
{{ ns.expression }}
{%- else -%}
{{ text }}
{%- endif -%}
{%- endmacro %}
