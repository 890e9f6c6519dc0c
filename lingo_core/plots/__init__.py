"""Figures shared by the dashboard, the notebooks and the study reports.

``charts``: run curves, budgets, rank heat maps, λ trajectories, run tables (plotly; no Streamlit).
``attribution``: attribution heat maps and sequence logos. ``study``: the study report's figures.
"""
