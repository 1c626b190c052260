"""b12lab: the nightly pipeline that finds patients with vitamin B12 deficiency and pernicious anaemia
who are missed, half-diagnosed or no longer monitored."""
