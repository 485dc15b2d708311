from nicodec.launch import export

export()
