"""Streamlit UI of API-Net Explorer: widgets, state and caching only (all maths lives in ``apinet``)."""
