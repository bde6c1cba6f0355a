"""API-Net Explorer: `streamlit run streamlit_app.py` (see README, "The app")."""

from app.main import main

main()
