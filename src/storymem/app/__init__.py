"""The web app (`storymem app`): a thin Gradio face over the runner, the run folder and eval."""
