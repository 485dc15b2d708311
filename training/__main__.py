from nicodec.launch import train

train()
