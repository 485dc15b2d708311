from .launch import nicodec

nicodec()
