"""``trajforge view``: browse, search and compare every row of every version in a local web app.

``query`` asks the Delta table for each page's rows, ``state_diff`` rebuilds
what a dialogue changed, ``figures`` lists a manifest's numbers, ``app`` renders
the pages and ``server`` binds 127.0.0.1 and runs them.
"""
