from .train import app

app(prog_name="nicodec-train")
