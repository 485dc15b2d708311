from .export import app

app(prog_name="nicodec-export")
