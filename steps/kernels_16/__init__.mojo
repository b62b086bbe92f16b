# Lesson 16's Mojo package: MAX builds this folder when a graph names it in
# custom_extensions. The op itself is in matvec.mojo.
